"""Rooms service settings: the lease, and errors that name the variable."""

from __future__ import annotations

import msgspec
import pytest

from chat_rooms.settings import load_settings


def test_the_lease_defaults_to_a_bucket_of_its_own() -> None:
    settings = load_settings({})
    assert settings.rooms_lease_bucket == "chat_rooms"
    assert settings.rooms_lease_ttl_s == 3.0
    assert settings.rooms_lease_replicas == 1


def test_the_lease_settings_are_read_and_an_empty_bucket_means_none() -> None:
    settings = load_settings(
        {
            "CHAT_ROOMS_LEASE_BUCKET": "",
            "CHAT_ROOMS_LEASE_TTL_S": "1.5",
            "CHAT_ROOMS_LEASE_REPLICAS": "3",
        }
    )
    assert (settings.rooms_lease_bucket, settings.rooms_lease_ttl_s) == ("", 1.5)
    assert settings.rooms_lease_replicas == 3


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("CHAT_ROOMS_LEASE_BUCKET", "chat.rooms", id="bucket-dot"),
        pytest.param("CHAT_ROOMS_LEASE_TTL_S", "0.1", id="ttl-too-short"),
        pytest.param("CHAT_ROOMS_LEASE_TTL_S", "61", id="ttl-too-long"),
        pytest.param("CHAT_ROOMS_LEASE_REPLICAS", "0", id="replicas-zero"),
        pytest.param("CHAT_ROOMS_LEASE_REPLICAS", "6", id="replicas-six"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=variable):
        load_settings({variable: value})
