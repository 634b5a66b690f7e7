"""Local sources: a missing or escaping path is a 404, never a file outside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError

from pumpguard.updates import LOCAL_BASE_URL, DirectorySource, MemorySource, SourceFetcher


def test_directory_source_stays_inside_its_directory(tmp_path: Path) -> None:
    published = tmp_path / "published"
    (published / "metadata").mkdir(parents=True)
    (published / "metadata" / "root.json").write_bytes(b"root")
    (tmp_path / "secret.pem").write_bytes(b"key")
    source = DirectorySource(published)
    assert source.read("metadata/root.json") == b"root"
    for escape in ("../secret.pem", "/etc/passwd", "metadata/../../secret.pem", "", "metadata"):
        assert source.read(escape) is None


def test_source_fetcher_answers_404_for_anything_it_does_not_hold() -> None:
    fetcher = SourceFetcher(MemorySource({"metadata/1.root.json": b"root"}))
    assert fetcher.download_bytes(f"{LOCAL_BASE_URL}metadata/1.root.json", 100) == b"root"
    for url in (f"{LOCAL_BASE_URL}metadata/2.root.json", "https://elsewhere/metadata/1.root.json"):
        with pytest.raises(DownloadHTTPError) as raised:
            fetcher.download_bytes(url, 100)
        assert raised.value.status_code == 404


def test_memory_source_copies_are_independent(tmp_path: Path) -> None:
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "a.json").write_bytes(b"a")
    original = MemorySource.from_directory(tmp_path)
    copy = original.copy()
    copy.put("targets/a.json", b"tampered")
    copy.delete("targets/missing")
    assert original.read("targets/a.json") == b"a"
    assert copy.paths() == ("targets/a.json",)
