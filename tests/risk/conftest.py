"""Shared fixtures: the shipped knowledge base, catalogue, questionnaires and controls."""

from __future__ import annotations

import pytest

from pumpguard.risk import (
    ControlCatalogue,
    KnowledgeBase,
    ModelCatalogue,
    load_catalogue,
    load_controls,
    load_knowledge_base,
    load_questionnaires,
)
from pumpguard.risk.questionnaire import Questionnaires


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


@pytest.fixture(scope="session")
def catalogue() -> ModelCatalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def questionnaires() -> Questionnaires:
    return load_questionnaires()


@pytest.fixture(scope="session")
def controls() -> ControlCatalogue:
    return load_controls()
