"""The secure profile: authenticated pairing, per-session keys, AEAD frames, role authorisation.

One ``SecureEndpoint`` does the protocol for every device; ``SecurePumpEndpoint``,
``SecureControllerEndpoint`` and ``SecureCgmEndpoint`` add what each device does with an
authenticated message. The sequence diagrams, frame layouts and test vectors are in
``docs/protocols/insulin-link.md``. In short:

* pairing happens only while a window opened by the user at the responder (the pump, or the
  controller for a CGM) is open; X25519, a commitment, nonces, and a 6-digit number shown on both
  devices that each user confirms with an explicit call; a man in the middle changes the number;
* each connection derives fresh session keys from the LTK and two session nonces (HKDF);
* each frame is AES-CCM with an 8-byte tag, a per-direction 64-bit counter (16 bits on the wire)
  checked against a 64-frame replay window, and the header, addresses and session id as
  associated data; its destination is the receiver's rolling wake-up address for that counter;
* inside, IDS/CGMS PDUs with E2E-CRC and E2E-counter, both checked;
* only the paired controller commands the pump, a CGM only reports; commands, session set-ups
  and pairing attempts are rate-limited; radio time spent on frames that do not authenticate is
  budgeted per hour, after which the device listens only on its sessions' next wake-up
  addresses (which a flooder cannot know);
* every refusal is a ``SecurityEvent`` with a ``LinkEventCode``, and none changes therapy.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE
from pumpguard.devices.insulin import (
    Command,
    CommandSource,
    IdsResponseCode,
    InsulinPump,
    StartLimitedMode,
)
from pumpguard.devices.sensors import CgmReading
from pumpguard.link._base import Endpoint, HandledCommand, LinkReply, RateLimiter
from pumpguard.link.codes import LinkEventCode, Role
from pumpguard.link.crypto import (
    Direction,
    PairingKeys,
    ReplayWindow,
    SessionKeys,
    aead_open,
    aead_seal,
    commitment,
    derive_pairing_keys,
    derive_session_keys,
    numeric_code,
    pairing_check,
    private_key,
    public_bytes,
    session_mac,
    shared_secret,
    verify,
    wake_address,
)
from pumpguard.link.e2e import next_e2e_counter
from pumpguard.link.energy import NRF52_CLASS, EnergyModel
from pumpguard.link.frames import (
    ADDRESS_BYTES,
    MAX_FRAME_BYTES,
    TAG_BYTES,
    FrameError,
    FrameKind,
    SecureFrame,
    address_text,
    decode_secure,
)
from pumpguard.link.medium import IFS_US, RadioMedium
from pumpguard.link.pdu import (
    AppKind,
    CgmMeasurement,
    CpResponse,
    E2eCrcError,
    PduError,
    PumpStatusPdu,
    decode_cgm,
    decode_command,
    decode_response,
    decode_status,
    e2e_unwrap,
    e2e_wrap,
    encode_cgm,
    encode_command,
    encode_response,
    encode_status,
    request_opcode,
)
from pumpguard.security_events import SecurityEventSink

__all__ = [
    "LinkPolicy",
    "PairedPeer",
    "PairingStage",
    "SecureCgmEndpoint",
    "SecureControllerEndpoint",
    "SecureEndpoint",
    "SecurePumpEndpoint",
]

_ROLE_BYTE = {Role.CONTROLLER: 0x01, Role.CGM: 0x02, Role.METER_REMOTE: 0x03, Role.PUMP: 0x04}
_BYTE_ROLE = {v: k for k, v in _ROLE_BYTE.items()}
_DATA_HEADER_BYTES = 1 + 2 * ADDRESS_BYTES + 2
"""Kind, destination (wake-up address), source, 16 bits of the counter."""
_FAIL_REJECTED = 0x01
_FAIL_CHECK = 0x02
_FAIL_BUSY = 0x03


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """The secure profile's limits (defaults and their reasons in the specification)."""

    pairing_window_ms: int = 2 * MS_PER_MINUTE
    pairing_attempts_per_window: int = 3
    command_burst: int = 10
    command_refill_ms: int = 6_000
    session_burst: int = 3
    session_refill_ms: int = 20_000
    wakeup_budget_ms_per_hour: int = 20_000
    """Radio-and-CPU time per hour a device spends on frames that fail to authenticate before
    it stops listening on its public address."""
    link_loss_ms: int = 20 * MS_PER_MINUTE
    cgm_stale_ms: int = 15 * MS_PER_MINUTE
    e2e_max_gap: int = 8
    counter_max_ahead: int = 64
    wake_ahead: int = 8
    """Future wake-up addresses a receiver listens on per session (lost frames in a row)."""
    resync_after: int = 3
    """Unanswered requests after which a controller sets up a new session (its frames may have
    run past the pump's wake-up window)."""


DEFAULT_POLICY = LinkPolicy()


@dataclass(frozen=True, slots=True)
class PairedPeer:
    address: int
    role: Role
    ltk: bytes = field(repr=False)
    we_initiated: bool


class PairingStage(StrEnum):
    REQUESTED = "requested"
    RESPONDED = "responded"
    NONCE_SENT = "nonce-sent"
    AWAITING_USER = "awaiting-user"
    CHECK_SENT = "check-sent"


@dataclass(slots=True)
class _Pairing:
    peer: int
    initiator: bool
    role: Role
    """The role the initiator asked to be paired as."""
    peer_role: Role
    own_key: X25519PrivateKey = field(repr=False)
    own_public: bytes
    own_nonce: bytes = field(repr=False)
    stage: PairingStage
    peer_public: bytes = b""
    peer_nonce: bytes = b""
    peer_commit: bytes = b""
    code: int | None = None
    user_confirmed: bool = False
    peer_check: bytes = b""

    def context(self, own_address: int) -> bytes:
        i, r = (own_address, self.peer) if self.initiator else (self.peer, own_address)
        return _addr(i) + _addr(r) + bytes([_ROLE_BYTE[self.role]])

    @property
    def keys_in_order(self) -> tuple[bytes, bytes, bytes, bytes]:
        if self.initiator:
            return self.own_public, self.peer_public, self.own_nonce, self.peer_nonce
        return self.peer_public, self.own_public, self.peer_nonce, self.own_nonce


@dataclass(slots=True)
class _Session:
    keys: SessionKeys = field(repr=False)
    initiator: bool
    send_counter: int = 0
    replay: ReplayWindow = field(default_factory=ReplayWindow)

    @property
    def dir_out(self) -> int:
        return Direction.I2R if self.initiator else Direction.R2I

    @property
    def dir_in(self) -> int:
        return Direction.R2I if self.initiator else Direction.I2R


@dataclass(slots=True)
class _E2e:
    """IDS E2E counters of one pairing: they outlive sessions, so that a request retried in a
    new session keeps its counter, and with it its command id."""

    tag: str
    """Names the pairing in command ids (from its LTK), so a new pairing never reuses an id."""
    out: int = 0
    inn: int = 0
    wraps: int = 0
    recent: OrderedDict[int, tuple[bytes, str]] = field(default_factory=OrderedDict)
    """The last commands received: E2E counter -> (PDU, command id), to recognise a retry."""


def _addr(address: int) -> bytes:
    return address.to_bytes(ADDRESS_BYTES, "big")


class SecureEndpoint(Endpoint):
    """Pairing, sessions, AEAD and the wake-up budget; subclasses act on application PDUs."""

    ACCEPTS_PAIRING: frozenset[Role] = frozenset()
    """Roles this device accepts as pairing responder."""

    def __init__(
        self,
        medium: RadioMedium,
        *,
        name: str,
        address: int,
        role: Role,
        sink: SecurityEventSink,
        policy: LinkPolicy = DEFAULT_POLICY,
        random_bytes: Callable[[int], bytes] = os.urandom,
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
        device_id: str | None = None,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=role,
            sink=sink,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
            device_id=device_id,
        )
        self.policy = policy
        self._random = random_bytes
        self.peers: dict[int, PairedPeer] = {}
        self._e2e: dict[int, _E2e] = {}
        self._sessions: dict[int, _Session] = {}
        self._pending: dict[int, _Session] = {}
        self._session_init: dict[int, bytes] = {}
        self._seen_inits: dict[int, deque[bytes]] = {}
        self._session_limits: dict[int, RateLimiter] = {}
        self._pairing: _Pairing | None = None
        self._window_until_us = -1
        self._window_attempts = 0
        self._budget_hour = -1
        self._budget_used_us = 0.0
        self._restricted = False
        self._sent_to: deque[int] = deque(maxlen=64)
        self._listen_cache: frozenset[int] | None = None
        self.last_heard_us: dict[int, int] = {}

    # ------------------------------------------------------------------ user actions

    def open_pairing_window(self) -> None:
        """The user, at this device, allows pairing for ``policy.pairing_window_ms``."""
        self._window_until_us = self._now_us() + self.policy.pairing_window_ms * 1000
        self._window_attempts = 0

    def pairing_window_open(self, at_us: int | None = None) -> bool:
        return (self._now_us() if at_us is None else at_us) < self._window_until_us

    def start_pairing(self, peer: int, peer_role: Role) -> None:
        """The user, at this device, asks ``peer`` (whose role the user knows) to pair."""
        key = private_key(self._random(32))
        own_public = public_bytes(key)
        self.meter.x25519()
        self._pairing = _Pairing(
            peer,
            True,
            self.role,
            peer_role,
            key,
            own_public,
            self._random(16),
            PairingStage.REQUESTED,
        )
        body = bytes([_ROLE_BYTE[self.role]]) + own_public
        self._send_control(FrameKind.PAIR_REQUEST, peer, body)
        self.medium.settle()

    @property
    def pairing_code(self) -> int | None:
        """The 6-digit number this device displays, once both nonces are known."""
        return None if self._pairing is None else self._pairing.code

    @property
    def pairing_stage(self) -> PairingStage | None:
        return None if self._pairing is None else self._pairing.stage

    def confirm_pairing(self, accept: bool) -> bool:
        """The user says whether the number on this device matches the one on the other;
        False if there is no number to confirm (the other side gave up, or none was shown)."""
        p = self._pairing
        if p is None or p.code is None:
            return False
        at = self._now_us()
        if not accept:
            self._emit(LinkEventCode.PAIRING_REJECTED, "the user rejected the number", at, p.peer)
            self._send_control(FrameKind.PAIR_FAIL, p.peer, bytes([_FAIL_REJECTED]))
            self._pairing = None
            self.medium.settle()
            return True
        p.user_confirmed = True
        if p.initiator:
            self._send_control(FrameKind.PAIR_CHECK_I, p.peer, self._check(p, b"I"))
            p.stage = PairingStage.CHECK_SENT
        elif p.peer_check:
            self._finish_responder(p, at)
        self.medium.settle()
        return True

    def connect(self, peer: int) -> bool:
        """Set up a fresh session with a paired ``peer`` (we initiated its pairing)."""
        known = self.peers.get(peer)
        if known is None or not known.we_initiated:
            raise ValueError(f"{address_text(peer)} is not a device this one paired with")
        nonce = self._random(8)
        self._session_init[peer] = nonce
        header = bytes([FrameKind.SESSION_INIT]) + _addr(peer) + _addr(self.address)
        self.meter.hmac(len(header) + 8)
        self._send_control(
            FrameKind.SESSION_INIT, peer, nonce + session_mac(known.ltk, header, nonce)
        )
        self.medium.settle()
        return peer in self._sessions and peer not in self._session_init

    def has_session(self, peer: int) -> bool:
        return peer in self._sessions

    def unpair(self, peer: int) -> None:
        self.peers.pop(peer, None)
        self._e2e.pop(peer, None)
        self._sessions.pop(peer, None)
        self._pending.pop(peer, None)
        self._listen_cache = None

    @property
    def restricted(self) -> bool:
        """The wake-up budget is spent: only sessions' next wake-up addresses are listened on."""
        return self._restricted

    # ------------------------------------------------------------------ radio

    def on_frame(self, data: bytes, at_us: int) -> None:
        self._roll_budget(at_us)
        dst = self._dst(data)
        if dst is None or not self._listening(dst, at_us):
            return
        before = self.meter.active_us
        self.meter.wake()
        self.meter.receive(len(data))
        self.meter.cpu()
        if not self._handle(data, at_us):
            self._spend_budget(self.meter.active_us - before, at_us)

    def _listening(self, dst: int, at_us: int) -> bool:
        """The radio's address match: public address (unless restricted), wake-up addresses."""
        if dst == self.address:
            return not self._restricted or self.pairing_window_open(at_us)
        if self._listen_cache is None:
            self._listen_cache = self._wake_addresses()
        return dst in self._listen_cache

    def _wake_addresses(self) -> frozenset[int]:
        found: set[int] = set()
        back = 0 if self._restricted else 64
        for session in (*self._sessions.values(), *self._pending.values()):
            high = session.replay.highest
            lo = max(0, high + 1 - back)
            for c in range(lo, high + 1 + self.policy.wake_ahead):
                found.add(wake_address(session.keys.wake(session.dir_in), c))
        if not self._restricted:
            found.update(self._sent_to)
        return frozenset(found)

    def _roll_budget(self, at_us: int) -> None:
        hour = at_us // (MS_PER_HOUR * 1000)
        if hour != self._budget_hour:
            self._budget_hour = hour
            self._budget_used_us = 0.0
            if self._restricted:
                self._restricted = False
                self._listen_cache = None

    def _spend_budget(self, us: float, at_us: int) -> None:
        self._budget_used_us += us
        if (
            not self._restricted
            and self._budget_used_us > self.policy.wakeup_budget_ms_per_hour * 1000
        ):
            self._restricted = True
            self._listen_cache = None
            self._emit(
                LinkEventCode.WAKEUP_BUDGET_EXHAUSTED,
                "radio time on unauthenticated frames over budget: listening on session "
                "wake-up addresses only until the hour ends",
                at_us,
                budget_ms=str(self.policy.wakeup_budget_ms_per_hour),
            )

    def _handle(self, data: bytes, at_us: int) -> bool:
        """Act on one frame; True if it authenticated (or was legitimate pairing traffic)."""
        try:
            frame = decode_secure(data)
        except FrameError as exc:
            self._emit(exc.code, str(exc), at_us)
            return False
        if frame.src == self.address or frame.dst in self._sent_to:
            self._emit(
                LinkEventCode.REFLECTION,
                "one of this device's own frames came back",
                at_us,
                frame.src,
            )
            return False
        match frame.kind:
            case FrameKind.DATA:
                return self._on_data(frame, at_us)
            case FrameKind.SESSION_INIT:
                return self._on_session_init(frame, at_us)
            case FrameKind.SESSION_ACCEPT:
                return self._on_session_accept(frame, at_us)
            case _:
                return self._on_pairing(frame, at_us)

    # ------------------------------------------------------------------ data frames

    def _send_control(
        self, kind: FrameKind, dst: int, body: bytes, at_us: int | None = None
    ) -> None:
        self._send(SecureFrame(kind, dst, self.address, body).encode(), at_us)

    def _send_app(self, peer: int, plaintext: bytes, at_us: int | None = None) -> bool:
        """Seal and send; False without a session, or for a message no receiver would take
        (over ``MAX_FRAME_BYTES`` sealed): refused before it spends a counter, since every
        counter sent and never received moves the sender past the receiver's wake-up window."""
        session = self._sessions.get(peer)
        if session is None or _DATA_HEADER_BYTES + len(plaintext) + TAG_BYTES > MAX_FRAME_BYTES:
            return False
        counter = session.send_counter
        session.send_counter += 1
        dst = wake_address(session.keys.wake(session.dir_out), counter)
        header = bytes([FrameKind.DATA]) + _addr(dst) + _addr(self.address)
        header += (counter & 0xFFFF).to_bytes(2, "little")
        sealed = aead_seal(session.keys, session.dir_out, counter, header, plaintext)
        self.meter.aead(len(plaintext))
        self._sent_to.append(dst)
        self._listen_cache = None
        self._send(header + sealed, at_us)
        return True

    def _on_data(self, frame: SecureFrame, at_us: int) -> bool:
        peer = self.peers.get(frame.src)
        if peer is None:
            self._emit(
                LinkEventCode.UNKNOWN_SENDER,
                "data frame from a device never paired",
                at_us,
                frame.src,
            )
            return False
        candidates = [s for s in (self._pending.get(frame.src), self._sessions.get(frame.src)) if s]
        if not candidates:
            self._emit(LinkEventCode.NO_SESSION, "data frame without a session", at_us, frame.src)
            return False
        jumped = False
        for session in candidates:
            counter = session.replay.reconstruct(frame.counter16)
            if counter > session.replay.highest + self.policy.counter_max_ahead:
                jumped = True
                continue
            if frame.dst != wake_address(session.keys.wake(session.dir_in), counter):
                continue
            self.meter.aead(len(frame.sealed))
            plaintext = aead_open(session.keys, session.dir_in, counter, frame.header, frame.sealed)
            if plaintext is None:
                continue
            if not session.replay.fresh(counter):
                self._emit(
                    LinkEventCode.REPLAY,
                    f"frame counter {counter} already seen or too old",
                    at_us,
                    frame.src,
                )
                return False
            session.replay.accept(counter)
            if self._pending.get(frame.src) is session:
                self._sessions[frame.src] = self._pending.pop(frame.src)
            self._listen_cache = None
            self.last_heard_us[frame.src] = at_us
            self._on_app(peer, session, plaintext, at_us)
            return True
        if jumped:
            self._emit(
                LinkEventCode.COUNTER_JUMP,
                "frame counter far ahead of the last one",
                at_us,
                frame.src,
            )
        else:
            self._emit(LinkEventCode.BAD_MAC, "frame failed authentication", at_us, frame.src)
        return False

    def _on_app(self, peer: PairedPeer, session: _Session, plaintext: bytes, at_us: int) -> None:
        self._emit(
            LinkEventCode.PDU_INVALID,
            "this device takes no application messages",
            at_us,
            peer.address,
        )

    def _e2e_in(self, peer: PairedPeer, body: bytes, at_us: int) -> tuple[bytes, int, bool] | None:
        """The PDU, its E2E counter and whether it repeats an earlier request (the last one, or
        a recent command byte for byte); None if refused."""
        try:
            pdu, counter = e2e_unwrap(body)
        except E2eCrcError as exc:
            self._emit(LinkEventCode.E2E_CRC, str(exc), at_us, peer.address)
            return None
        except PduError as exc:
            self._emit(LinkEventCode.PDU_INVALID, str(exc), at_us, peer.address)
            return None
        state = self._e2e[peer.address]
        known = state.recent.get(counter)
        if known is not None and known[0] == pdu:
            return pdu, counter, True
        last = state.inn
        gap = (counter - last) % 255 if last else counter
        if last and gap == 0:
            return pdu, counter, True
        if not 1 <= gap <= self.policy.e2e_max_gap:
            self._emit(
                LinkEventCode.E2E_COUNTER,
                f"E2E counter {counter} after {last}: not the next request",
                at_us,
                peer.address,
            )
            return None
        if last and counter < last:
            state.wraps += 1
        state.inn = counter
        return pdu, counter, False

    def _e2e_out(self, peer: int) -> int:
        state = self._e2e[peer]
        state.out = next_e2e_counter(state.out)
        return state.out

    # ------------------------------------------------------------------ sessions

    def _on_session_init(self, frame: SecureFrame, at_us: int) -> bool:
        peer = self.peers.get(frame.src)
        if peer is None or peer.we_initiated:
            self._emit(
                LinkEventCode.UNKNOWN_SENDER,
                "session request from a device not paired",
                at_us,
                frame.src,
            )
            return False
        limiter = self._session_limits.setdefault(
            frame.src, RateLimiter(self.policy.session_burst, self.policy.session_refill_ms)
        )
        if not limiter.allow(at_us // 1000):
            self._emit(LinkEventCode.RATE_LIMITED, "too many session requests", at_us, frame.src)
            return False
        nonce, mac = frame.body[:8], frame.body[8:]
        header = frame.header
        self.meter.hmac(len(header) + 8)
        if not verify(session_mac(peer.ltk, header, nonce), mac):
            self._emit(
                LinkEventCode.SESSION_BAD_MAC,
                "session request failed authentication",
                at_us,
                frame.src,
            )
            return False
        seen = self._seen_inits.setdefault(frame.src, deque(maxlen=64))
        if nonce in seen:
            self._emit(LinkEventCode.REPLAY, "a session request seen before", at_us, frame.src)
            return False
        seen.append(nonce)
        nonce_r = self._random(8)
        context = _addr(frame.src) + _addr(self.address)
        self._pending[frame.src] = _Session(
            derive_session_keys(peer.ltk, nonce, nonce_r, context), False
        )
        self._listen_cache = None
        reply_header = bytes([FrameKind.SESSION_ACCEPT]) + _addr(frame.src) + _addr(self.address)
        self.meter.hmac(len(reply_header) + 16)
        mac_r = session_mac(peer.ltk, reply_header, nonce, nonce_r)
        self._send_control(FrameKind.SESSION_ACCEPT, frame.src, nonce_r + mac_r, at_us + IFS_US)
        self.last_heard_us[frame.src] = at_us
        return True

    def _on_session_accept(self, frame: SecureFrame, at_us: int) -> bool:
        peer = self.peers.get(frame.src)
        nonce = self._session_init.get(frame.src)
        if peer is None or nonce is None:
            self._emit(
                LinkEventCode.UNKNOWN_SENDER, "session answer nobody asked for", at_us, frame.src
            )
            return False
        nonce_r, mac = frame.body[:8], frame.body[8:]
        self.meter.hmac(len(frame.header) + 16)
        if not verify(session_mac(peer.ltk, frame.header, nonce, nonce_r), mac):
            self._emit(
                LinkEventCode.SESSION_BAD_MAC,
                "session answer failed authentication",
                at_us,
                frame.src,
            )
            return False
        del self._session_init[frame.src]
        context = _addr(self.address) + _addr(frame.src)
        self._sessions[frame.src] = _Session(
            derive_session_keys(peer.ltk, nonce, nonce_r, context), True
        )
        self._listen_cache = None
        self.last_heard_us[frame.src] = at_us
        return True

    # ------------------------------------------------------------------ pairing

    def _check(self, p: _Pairing, label: bytes) -> bytes:
        _, _, n_i, n_r = p.keys_in_order
        keys = self._pairing_keys(p)
        self.meter.hmac(64)
        return pairing_check(keys, label, n_i, n_r, p.context(self.address))

    def _pairing_keys(self, p: _Pairing) -> PairingKeys:
        pk_i, pk_r, n_i, n_r = p.keys_in_order
        secret = shared_secret(p.own_key, p.peer_public)
        self.meter.x25519()
        self.meter.hmac(128)
        if secret is None:
            secret = bytes(32)
        return derive_pairing_keys(secret, pk_i, pk_r, n_i, n_r, p.context(self.address))

    def _fail_pairing(self, p: _Pairing, reason: str, at_us: int, code: int = _FAIL_CHECK) -> bool:
        self._emit(LinkEventCode.PAIRING_FAILED, reason, at_us, p.peer)
        self._send_control(FrameKind.PAIR_FAIL, p.peer, bytes([code]), at_us + IFS_US)
        self._pairing = None
        return False

    def _on_pairing(self, frame: SecureFrame, at_us: int) -> bool:
        kind, src, body = frame.kind, frame.src, frame.body
        p = self._pairing
        reply_at = at_us + IFS_US
        if kind is FrameKind.PAIR_REQUEST:
            return self._on_pair_request(frame, at_us)
        if p is None or p.peer != src:
            self._emit(
                LinkEventCode.PAIRING_UNSOLICITED,
                f"{kind.name} outside any pairing with this device",
                at_us,
                src,
            )
            return False
        if kind is FrameKind.PAIR_FAIL:
            self._emit(
                LinkEventCode.PAIRING_FAILED, "the other device ended the pairing", at_us, src
            )
            self._pairing = None
            return True
        if not p.initiator and not self.pairing_window_open(at_us):
            self._pairing = None
            self._emit(
                LinkEventCode.PAIRING_OUTSIDE_WINDOW, "the pairing window closed", at_us, src
            )
            return False
        expected = {
            FrameKind.PAIR_RESPONSE: (True, PairingStage.REQUESTED),
            FrameKind.PAIR_NONCE_I: (False, PairingStage.RESPONDED),
            FrameKind.PAIR_NONCE_R: (True, PairingStage.NONCE_SENT),
            FrameKind.PAIR_CHECK_I: (False, PairingStage.AWAITING_USER),
            FrameKind.PAIR_CHECK_R: (True, PairingStage.CHECK_SENT),
        }[kind]
        if expected != (p.initiator, p.stage):
            self._emit(
                LinkEventCode.PAIRING_UNSOLICITED,
                f"{kind.name} out of order (pairing is {p.stage})",
                at_us,
                src,
            )
            return False
        if kind is FrameKind.PAIR_RESPONSE:
            p.peer_public, p.peer_commit = body[:32], body[32:]
            p.stage = PairingStage.NONCE_SENT
            self._send_control(FrameKind.PAIR_NONCE_I, src, p.own_nonce, reply_at)
        elif kind is FrameKind.PAIR_NONCE_I:
            p.peer_nonce = body
            self._send_control(FrameKind.PAIR_NONCE_R, src, p.own_nonce, reply_at)
            self._show_code(p)
        elif kind is FrameKind.PAIR_NONCE_R:
            p.peer_nonce = body
            self.meter.hmac(64)
            if not verify(commitment(p.peer_nonce, p.peer_public, p.own_public), p.peer_commit):
                return self._fail_pairing(
                    p, "the responder's nonce does not match its commitment", at_us
                )
            self._show_code(p)
        elif kind is FrameKind.PAIR_CHECK_I:
            p.peer_check = body
            if p.user_confirmed:
                return self._finish_responder(p, at_us)
        else:
            if not verify(self._check(p, b"R"), body):
                return self._fail_pairing(p, "the responder's key check failed", at_us)
            self._complete(p, at_us)
        return True

    def _show_code(self, p: _Pairing) -> None:
        pk_i, pk_r, n_i, n_r = p.keys_in_order
        self.meter.hmac(96)
        p.code = numeric_code(pk_i, pk_r, n_i, n_r)
        p.stage = PairingStage.AWAITING_USER

    def _on_pair_request(self, frame: SecureFrame, at_us: int) -> bool:
        src = frame.src
        if not self.pairing_window_open(at_us):
            self._emit(
                LinkEventCode.PAIRING_OUTSIDE_WINDOW,
                "pairing request with no window open",
                at_us,
                src,
            )
            return False
        role = _BYTE_ROLE.get(frame.body[0])
        if role is None or role not in self.ACCEPTS_PAIRING:
            self._emit(
                LinkEventCode.ROLE_DENIED,
                f"pairing as role byte 0x{frame.body[0]:02X} is not accepted here",
                at_us,
                src,
            )
            return False
        if self._pairing is not None and self._pairing.peer != src:
            self._emit(
                LinkEventCode.PAIRING_FAILED,
                "a second device asked to pair at the same time",
                at_us,
                src,
            )
            self._send_control(FrameKind.PAIR_FAIL, src, bytes([_FAIL_BUSY]), at_us + IFS_US)
            return False
        self._window_attempts += 1
        if self._window_attempts > self.policy.pairing_attempts_per_window:
            self._window_until_us = -1
            self._pairing = None
            self._emit(
                LinkEventCode.RATE_LIMITED, "too many pairing attempts: window closed", at_us, src
            )
            return False
        key = private_key(self._random(32))
        own_public = public_bytes(key)
        self.meter.x25519()
        p = _Pairing(
            src, False, role, self.role, key, own_public, self._random(16), PairingStage.RESPONDED
        )
        p.peer_public = frame.body[1:]
        self._pairing = p
        self.meter.hmac(64)
        commit = commitment(p.own_nonce, own_public, p.peer_public)
        self._send_control(FrameKind.PAIR_RESPONSE, src, own_public + commit, at_us + IFS_US)
        return True

    def _finish_responder(self, p: _Pairing, at_us: int) -> bool:
        if not verify(self._check(p, b"I"), p.peer_check):
            return self._fail_pairing(p, "the initiator's key check failed", at_us)
        self._send_control(FrameKind.PAIR_CHECK_R, p.peer, self._check(p, b"R"), at_us + IFS_US)
        self._complete(p, at_us)
        self._window_until_us = -1
        return True

    def _complete(self, p: _Pairing, at_us: int) -> None:
        keys = self._pairing_keys(p)
        role = p.peer_role if p.initiator else p.role
        for old in [
            a for a, peer in self.peers.items() if peer.role is role and self._single(role)
        ]:
            self.unpair(old)
        self.peers[p.peer] = PairedPeer(p.peer, role, keys.ltk, p.initiator)
        self._e2e[p.peer] = _E2e(session_mac(keys.ltk, b"pumpguard-link command ids")[:4].hex())
        self._sessions.pop(p.peer, None)
        self._pending.pop(p.peer, None)
        self._pairing = None
        self._emit(
            LinkEventCode.PAIRING_COMPLETED, f"paired with a {role}", at_us, p.peer, role=str(role)
        )

    def _single(self, role: Role) -> bool:
        """Roles of which this device keeps one peer at most (a pump has one controller)."""
        return role in (Role.CONTROLLER, Role.PUMP)


class SecurePumpEndpoint(SecureEndpoint):
    """The pump's radio: only its paired controller commands it; limits stay in the firmware."""

    ACCEPTS_PAIRING = frozenset({Role.CONTROLLER, Role.CGM})

    def __init__(
        self,
        medium: RadioMedium,
        pump: InsulinPump,
        *,
        address: int,
        sink: SecurityEventSink,
        name: str = "pump",
        policy: LinkPolicy = DEFAULT_POLICY,
        random_bytes: Callable[[int], bytes] = os.urandom,
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=Role.PUMP,
            sink=sink,
            policy=policy,
            random_bytes=random_bytes,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
            device_id=pump.serial,
        )
        self.pump = pump
        self.link_alarm = False
        self.handled: list[HandledCommand] = []
        """Every command handed to the firmware, in order."""
        self._commands: dict[int, RateLimiter] = {}
        self._fallbacks = 0

    def _on_app(self, peer: PairedPeer, session: _Session, plaintext: bytes, at_us: int) -> None:
        kind, body = plaintext[0], plaintext[1:]
        if peer.role is not Role.CONTROLLER:
            self._emit(
                LinkEventCode.ROLE_DENIED,
                f"a {peer.role} may not command the pump",
                at_us,
                peer.address,
            )
            return
        self.link_alarm = False
        if kind == AppKind.STATUS_REQUEST:
            if self._e2e_in(peer, body, at_us) is None:
                return
            pump = self.pump
            pdu = encode_status(pump.state, pump.reservoir_u, bool(pump.alarms))
            self._reply(peer.address, session, AppKind.STATUS, pdu, at_us)
            return
        if kind not in (AppKind.COMMAND_REMOTE, AppKind.COMMAND_AUTOMATED):
            self._emit(
                LinkEventCode.PDU_INVALID,
                f"message kind 0x{kind:02X} is not for a pump",
                at_us,
                peer.address,
            )
            return
        limiter = self._commands.setdefault(
            peer.address, RateLimiter(self.policy.command_burst, self.policy.command_refill_ms)
        )
        checked = self._e2e_in(peer, body, at_us)
        if checked is None:
            return
        pdu, counter, repeat = checked
        if not repeat and not limiter.allow(at_us // 1000):
            self._emit(LinkEventCode.RATE_LIMITED, "too many commands", at_us, peer.address)
            response = CpResponse(request_opcode(pdu), IdsResponseCode.PROCEDURE_NOT_COMPLETED)
            self._reply(
                peer.address, session, AppKind.COMMAND_RESPONSE, encode_response(response), at_us
            )
            return
        source = (
            CommandSource.AUTOMATED if kind == AppKind.COMMAND_AUTOMATED else CommandSource.REMOTE
        )
        e2e = self._e2e[peer.address]
        known = e2e.recent.get(counter)
        if known is not None and known[0] == pdu:
            command_id = known[1]
        else:
            command_id = f"{e2e.tag}-{e2e.wraps}-{counter}"
            e2e.recent[counter] = (pdu, command_id)
            while len(e2e.recent) > self.policy.e2e_max_gap:
                e2e.recent.popitem(last=False)
        try:
            request = decode_command(pdu, source, command_id)
        except PduError as exc:
            self._emit(LinkEventCode.PDU_INVALID, str(exc), at_us, peer.address)
            response = CpResponse(request_opcode(pdu), exc.ids_code)
        else:
            result = self.pump.handle(request.command)
            self.handled.append(HandledCommand(at_us, peer.address, request.command, result))
            response = CpResponse(request.opcode, result.ids_code, result.bolus_id)
        self._reply(
            peer.address, session, AppKind.COMMAND_RESPONSE, encode_response(response), at_us
        )

    def _reply(self, peer: int, session: _Session, kind: AppKind, pdu: bytes, at_us: int) -> None:
        self._send_app(peer, bytes([kind]) + e2e_wrap(pdu, self._e2e_out(peer)), at_us + IFS_US)

    def tick(self) -> None:
        """Link-loss watch: with the controller silent too long, alarm and drop automation."""
        now = self._now_us()
        for peer in self.peers.values():
            if peer.role is not Role.CONTROLLER:
                continue
            heard = self.last_heard_us.get(peer.address)
            if heard is None or self.link_alarm:
                continue
            if now - heard >= self.policy.link_loss_ms * 1000:
                self.link_alarm = True
                self._emit(
                    LinkEventCode.LINK_LOST,
                    "no authenticated frame from the controller: automation lost, the pump "
                    "runs its limited mode (adaptive basal, never above the schedule)",
                    now,
                    peer.address,
                )
                temp = self.pump.temp_basal
                if temp is None or temp.source is CommandSource.AUTOMATED:
                    self._fallbacks += 1
                    self.pump.handle(
                        StartLimitedMode(CommandSource.AUTOMATED, f"link-loss-{self._fallbacks}")
                    )


class SecureControllerEndpoint(SecureEndpoint):
    """The controller's radio: commands its pump, takes readings from its paired CGMs."""

    ACCEPTS_PAIRING = frozenset({Role.CGM})

    def __init__(
        self,
        medium: RadioMedium,
        *,
        address: int,
        pump_address: int,
        sink: SecurityEventSink,
        name: str = "controller",
        policy: LinkPolicy = DEFAULT_POLICY,
        random_bytes: Callable[[int], bytes] = os.urandom,
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=Role.CONTROLLER,
            sink=sink,
            policy=policy,
            random_bytes=random_bytes,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
        )
        self.pump_address = pump_address
        self.readings: list[CgmReading] = []
        self.cgm_link_lost = False
        self._reply: CpResponse | None = None
        self._status: PumpStatusPdu | None = None
        self._sent_ids: OrderedDict[str, int] = OrderedDict()
        """E2E counters of the last commands sent, by command id: a retry reuses its counter."""
        self._unanswered = 0
        self._started_us = self._now_us()

    def pair_with_pump(self) -> None:
        self.start_pairing(self.pump_address, Role.PUMP)

    def _ready(self) -> bool:
        """A session with the pump, set up afresh if none (or the last one went deaf)."""
        if self._unanswered >= self.policy.resync_after:
            self._sessions.pop(self.pump_address, None)
            self._unanswered = 0
        if self.has_session(self.pump_address):
            return True
        return self.pump_address in self.peers and self.connect(self.pump_address)

    def _answered(self, answered: bool) -> None:
        self._unanswered = 0 if answered else self._unanswered + 1

    def send(self, command: Command) -> LinkReply | None:
        """Send a command; the same command id is sent with the same E2E counter (a retry),
        in this session or the next, so the pump answers a retry from its history."""
        if not self._ready():
            return None
        command_id = getattr(command, "command_id", None)
        counter = self._sent_ids.get(command_id or "")
        if counter is None:
            counter = self._e2e_out(self.pump_address)
        kind = (
            AppKind.COMMAND_AUTOMATED
            if command.source is CommandSource.AUTOMATED
            else AppKind.COMMAND_REMOTE
        )
        plaintext = bytes([kind]) + e2e_wrap(encode_command(command), counter)
        self._reply = None
        self._send_app(self.pump_address, plaintext)
        self.medium.settle()
        reply, self._reply = self._reply, None
        self._answered(reply is not None)
        if command_id is not None:
            self._sent_ids.pop(command_id, None)
            self._sent_ids[command_id] = counter
            while len(self._sent_ids) > self.policy.e2e_max_gap:
                self._sent_ids.popitem(last=False)
        if reply is None:
            return None
        return LinkReply(reply.request_opcode, reply.code, reply.bolus_id, command_id)

    def read_status(self) -> PumpStatusPdu | None:
        if not self._ready():
            return None
        self._status = None
        counter = self._e2e_out(self.pump_address)
        self._send_app(self.pump_address, bytes([AppKind.STATUS_REQUEST]) + e2e_wrap(b"", counter))
        self.medium.settle()
        self._answered(self._status is not None)
        return self._status

    def _on_app(self, peer: PairedPeer, session: _Session, plaintext: bytes, at_us: int) -> None:
        kind, body = plaintext[0], plaintext[1:]
        try:
            if kind == AppKind.CGM_MEASUREMENT:
                if peer.role is not Role.CGM:
                    self._emit(
                        LinkEventCode.ROLE_DENIED,
                        f"a {peer.role} does not report glucose",
                        at_us,
                        peer.address,
                    )
                    return
                m = decode_cgm(body, with_crc=True)
                self.readings.append(
                    CgmReading(at_us // 1000, float(m.glucose_mgdl), m.time_offset_min)
                )
                self.cgm_link_lost = False
                return
            if peer.role is not Role.PUMP:
                self._emit(
                    LinkEventCode.ROLE_DENIED,
                    f"a {peer.role} does not answer commands",
                    at_us,
                    peer.address,
                )
                return
            checked = self._e2e_in(peer, body, at_us)
            if checked is None:
                return
            pdu = checked[0]
            if kind == AppKind.COMMAND_RESPONSE:
                self._reply = decode_response(pdu)
            elif kind == AppKind.STATUS:
                self._status = decode_status(pdu)
            else:
                self._emit(
                    LinkEventCode.PDU_INVALID,
                    f"message kind 0x{kind:02X} unexpected",
                    at_us,
                    peer.address,
                )
        except E2eCrcError as exc:
            self._emit(LinkEventCode.E2E_CRC, str(exc), at_us, peer.address)
        except PduError as exc:
            self._emit(LinkEventCode.PDU_INVALID, str(exc), at_us, peer.address)

    def cgm_stale(self) -> bool:
        """No CGM reading in ``policy.cgm_stale_ms``: automation must not dose."""
        now = self._now_us()
        last = self.readings[-1].time_ms * 1000 if self.readings else self._started_us
        return now - last >= self.policy.cgm_stale_ms * 1000

    def tick(self) -> None:
        if (
            self.cgm_stale()
            and not self.cgm_link_lost
            and any(p.role is Role.CGM for p in self.peers.values())
        ):
            self.cgm_link_lost = True
            self._emit(
                LinkEventCode.LINK_LOST,
                "no authenticated CGM reading: automation suspended until readings return",
                self._now_us(),
            )


class SecureCgmEndpoint(SecureEndpoint):
    """The CGM's radio: it reports readings to its paired controller and does nothing else."""

    def __init__(
        self,
        medium: RadioMedium,
        *,
        address: int,
        receiver_address: int,
        sink: SecurityEventSink,
        name: str = "cgm",
        policy: LinkPolicy = DEFAULT_POLICY,
        random_bytes: Callable[[int], bytes] = os.urandom,
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=Role.CGM,
            sink=sink,
            policy=policy,
            random_bytes=random_bytes,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
        )
        self.receiver_address = receiver_address
        self._start_ms = medium.clock.now_ms()
        self._on_session = 0
        """Readings sent on the current session (see ``report``)."""

    def pair_with_receiver(self) -> None:
        self.start_pairing(self.receiver_address, Role.CONTROLLER)

    def report(self, reading: CgmReading) -> bool:
        """Send one reading; False if there is no session and none could be set up.

        Readings are never acknowledged, so the CGM cannot tell when its frames stop arriving;
        after ``policy.wake_ahead`` readings on one session it sets up a new one first. Without
        that, more than ``wake_ahead`` readings lost in a row (a jam) would leave its frames
        on wake-up addresses the receiver no longer listens on, for good. A failed set-up
        keeps the old session and is tried again with the next reading.
        """
        peer = self.receiver_address
        if self.has_session(peer) and self._on_session >= self.policy.wake_ahead:
            if self.connect(peer):
                self._on_session = 0
        elif not self.has_session(peer):
            if peer not in self.peers or not self.connect(peer):
                return False
            self._on_session = 0
        self._on_session += 1
        offset = max(0, (reading.time_ms - self._start_ms) // MS_PER_MINUTE)
        pdu = encode_cgm(CgmMeasurement(round(reading.glucose_mgdl), offset), with_crc=True)
        sent = self._send_app(self.receiver_address, bytes([AppKind.CGM_MEASUREMENT]) + pdu)
        self.medium.settle()
        return sent
