"""events/secretbox.py: sealing, opening, key rotation, refusing wrong keys and tampering."""

from __future__ import annotations

import pytest

from events.secretbox import SecretBox, SecretOpenError, SecretsKeyError, is_sealed


def test_sealed_text_opens_and_does_not_show_the_secret() -> None:
    box = SecretBox(SecretBox.generate_key())
    sealed = box.seal("hunter2")
    assert is_sealed(sealed) and "hunter2" not in sealed
    assert box.open(sealed) == "hunter2"
    assert box.seal("hunter2") != sealed  # a fresh IV every time


def test_another_key_or_a_changed_byte_is_refused() -> None:
    box = SecretBox(SecretBox.generate_key())
    sealed = box.seal("x")
    with pytest.raises(SecretOpenError, match="another key, or altered"):
        SecretBox(SecretBox.generate_key()).open(sealed)
    tampered = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    with pytest.raises(SecretOpenError):
        box.open(tampered)
    with pytest.raises(SecretOpenError, match="not a sealed secret"):
        box.open("plain text")


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    sealed_old = SecretBox(old).seal("v1")
    rotated = SecretBox(f"{new},{old}")
    assert rotated.open(sealed_old) == "v1"
    assert SecretBox(new).open(rotated.seal("v2")) == "v2"


@pytest.mark.parametrize("key", ["", " , ", "short", "x" * 44, "é" * 10])
def test_malformed_keys_are_refused_naming_the_setting(key: str) -> None:
    with pytest.raises(SecretsKeyError, match="FLOWBUS_SECRETS_KEY"):
        SecretBox(key)


def test_from_environment_is_none_when_unset() -> None:
    assert SecretBox.from_environment({}) is None
    assert SecretBox.from_environment({"FLOWBUS_SECRETS_KEY": SecretBox.generate_key()}) is not None
