"""A model server's refusal reads the same from the loop and from ``agent doctor``."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from openai_basic import AgentSpec, ToolRegistry, run_agent
from openai_basic.doctor import check_openai
from openai_basic.errors import AgentError, ConfigError, ModelChoiceError, ServiceError
from openai_basic.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Reply, error


def ping() -> str:
    """Answer the health check."""
    return "pong"


class Discard:
    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        pass


def turn(model: FakeOpenAI) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=model.base_url, max_retries=0)
    spec = AgentSpec(model="gpt-4o-mini", registry=ToolRegistry([ping]))
    run_agent(spec, client=client, history=[], user_message="hi", sink=Discard())


@pytest.mark.parametrize(
    ("reply", "failed_check", "kind"),
    [
        (error(401), "OpenAI key accepted", ConfigError),
        (
            error(404, "The model `gpt-4o-mini` does not exist"),
            "model 'gpt-4o-mini' accepted",
            ModelChoiceError,  # another model would do: the chat offers /model
        ),
        (error(400, "tools are not supported by this model"), "tool calling", ModelChoiceError),
        (error(400, "'temperature' is out of range"), "tool calling", ServiceError),
        (error(403, "Project lacks access"), "OpenAI key accepted", ServiceError),
    ],
    ids=["key", "model", "no-tool-calling", "other-400", "server"],
)
def test_the_doctor_and_the_loop_say_the_same_about_a_refusal(
    model: FakeOpenAI, settings: Settings, reply: Reply, failed_check: str, kind: type
) -> None:
    model.script(reply)
    *_, failed = check_openai(settings)
    model.script(reply)
    with pytest.raises(AgentError) as raised:
        turn(model)
    assert (failed.name, failed.ok) == (failed_check, False)
    assert type(raised.value) is kind
    assert str(raised.value).endswith(failed.detail)


def test_an_unreachable_server_reads_the_same_too(model: FakeOpenAI, settings: Settings) -> None:
    model.stop()
    (failed,) = check_openai(settings)
    with pytest.raises(ServiceError) as raised:
        turn(model)
    assert failed.detail.startswith("cannot reach the model server (")
    assert failed.detail.endswith("): check OPENAI_BASE_URL and the network")
    assert str(raised.value) == f"OpenAI: {failed.detail}"
