"""The AES-GCM payload codec: ciphertext with a key id, rotation, and tamper detection."""

from __future__ import annotations

import dataclasses
import os

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from adx_core.contracts.tenants import Plan, TenantAdmin, TenantCreationRequest
from adx_core.settings import Settings
from adx_core.temporal.client import data_converter
from adx_core.temporal.codec import ENCODING, KEY_ID, EncryptionCodec, UnknownKeyError

K1 = os.urandom(32)
K2 = os.urandom(32)
SECRET = b"ada@acme.test"


def _plain(data: bytes = b'"' + SECRET + b'"') -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_encode_writes_ciphertext_with_the_active_key_id() -> None:
    """Encoded payloads say binary/encrypted and name the active key; no plaintext is left."""
    codec = EncryptionCodec({"k1": K1}, "k1")
    [encoded] = await codec.encode([_plain()])
    assert encoded.metadata["encoding"] == ENCODING == b"binary/encrypted"
    assert encoded.metadata[KEY_ID] == b"k1"
    assert set(encoded.metadata) == {"encoding", KEY_ID}
    assert SECRET not in encoded.SerializeToString()
    assert b"json/plain" not in encoded.SerializeToString()  # inner metadata is encrypted too
    assert await codec.decode([encoded]) == [_plain()]


async def test_same_plaintext_encrypts_differently_each_time() -> None:
    """A fresh nonce per payload: equal inputs do not give equal ciphertexts."""
    codec = EncryptionCodec({"k1": K1}, "k1")
    first, second = await codec.encode([_plain(), _plain()])
    assert first.data != second.data
    assert first.data[:12] != second.data[:12]


async def test_rotation_decodes_payloads_of_the_old_key() -> None:
    """With {k1 old, k2 active}, old k1 payloads still decode and new ones use k2."""
    old = EncryptionCodec({"k1": K1}, "k1")
    rotated = EncryptionCodec({"k1": K1, "k2": K2}, "k2")
    [written_before] = await old.encode([_plain()])
    assert await rotated.decode([written_before]) == [_plain()]
    [written_after] = await rotated.encode([_plain()])
    assert written_after.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([written_after]) == [_plain()]
    # A process that has not got the new key yet cannot read k2 payloads.
    with pytest.raises(UnknownKeyError):
        await old.decode([written_after])


async def test_retired_key_cannot_decode() -> None:
    """Once k1 is removed from the configuration, its payloads fail with UnknownKeyError."""
    [payload] = await EncryptionCodec({"k1": K1}, "k1").encode([_plain()])
    with pytest.raises(UnknownKeyError, match="k1"):
        await EncryptionCodec({"k2": K2}, "k2").decode([payload])


async def test_missing_key_id_is_unknown() -> None:
    """An encrypted payload without a key id is refused, not decrypted with a guess."""
    [payload] = await EncryptionCodec({"k1": K1}, "k1").encode([_plain()])
    del payload.metadata[KEY_ID]
    with pytest.raises(UnknownKeyError):
        await EncryptionCodec({"k1": K1}, "k1").decode([payload])


async def test_tampered_ciphertext_fails() -> None:
    """Flipping one bit of the ciphertext, the tag or the nonce fails authentication."""
    codec = EncryptionCodec({"k1": K1}, "k1")
    [payload] = await codec.encode([_plain()])
    for index in (0, 12, len(payload.data) - 1):
        data = bytearray(payload.data)
        data[index] ^= 0x01
        tampered = Payload(metadata=dict(payload.metadata), data=bytes(data))
        with pytest.raises(InvalidTag):
            await codec.decode([tampered])
    truncated = Payload(metadata=dict(payload.metadata), data=payload.data[:10])
    with pytest.raises(InvalidTag):
        await codec.decode([truncated])


async def test_swapped_key_id_fails() -> None:
    """The key id is authenticated: relabelling a k1 payload as k2 does not decrypt,
    even when k2 is the same key material."""
    codec = EncryptionCodec({"k1": K1, "k2": K1}, "k1")
    [payload] = await codec.encode([_plain()])
    payload.metadata[KEY_ID] = b"k2"
    with pytest.raises(InvalidTag):
        await codec.decode([payload])


async def test_wrong_key_under_the_same_id_fails() -> None:
    """A payload decrypted with a different key under the same id fails authentication."""
    [payload] = await EncryptionCodec({"k1": K1}, "k1").encode([_plain()])
    with pytest.raises(InvalidTag):
        await EncryptionCodec({"k1": K2}, "k1").decode([payload])


async def test_unencrypted_payloads_pass_through() -> None:
    """Payloads written before encryption was on are returned unchanged."""
    codec = EncryptionCodec({"k1": K1}, "k1")
    assert await codec.decode([_plain()]) == [_plain()]


def test_active_key_must_be_configured() -> None:
    """A codec cannot be built with an active id it has no key for."""
    with pytest.raises(ValueError, match="k2"):
        EncryptionCodec({"k1": K1}, "k2")


async def test_data_converter_from_settings_roundtrips_contracts() -> None:
    """The converter built from settings encrypts a workflow input and reads it back."""
    import base64

    settings = Settings(codec_keys=f"k1:{base64.b64encode(K1).decode()}")
    converter = data_converter(settings)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    request = TenantCreationRequest(
        tenant_id="00000000-0000-4000-8000-00000000abcd",
        slug="acme",
        display_name="Acme Inc",
        plan=Plan.PRO,
        admin=TenantAdmin(email="ada@acme.test", name="Ada"),
        requested_by="u-1",
    )
    payloads = await converter.encode([request])
    assert all(p.metadata["encoding"] == ENCODING for p in payloads)
    raw = b"".join(p.SerializeToString() for p in payloads)
    assert b"acme" not in raw
    assert SECRET not in raw
    assert await converter.decode(payloads, [TenantCreationRequest]) == [request]


def test_no_keys_means_the_default_converter() -> None:
    """Without codec keys (development) payloads are not encrypted."""
    assert data_converter(Settings()) is DataConverter.default
    assert dataclasses.replace(DataConverter.default).payload_codec is None
