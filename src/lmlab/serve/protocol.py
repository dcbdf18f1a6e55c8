"""The wire format: pydantic models that mirror OpenAI's API, in the order of its reference.

Reference: https://platform.openai.com/docs/api-reference (chat, completions, embeddings,
models). Fields OpenAI defines that lmlab does not act on are accepted and ignored; unknown
fields are ignored and logged (as vLLM does). lmlab's extensions come after OpenAI's fields.
A `null` value means the field's default, as with OpenAI (its client sends `temperature: null`
for `temperature=None`). Booleans are strict: `"stream": "yes"` is an error, not true.

The sampling fields (temperature, top_p and the extensions top_k, min_p, repetition_penalty)
default to None here: a request that leaves one out gets the served model's defaults (its
recommended settings unless `lmlab serve --sampling-defaults` says otherwise; GET /v1/models
lists them), not OpenAI's temperature 1.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

log = logging.getLogger("lmlab.serve")


class OpenAIModel(BaseModel):
    """Base of every request object: unknown fields are ignored and logged, not rejected, and
    a field sent as null takes its default (OpenAI's nullable optional fields)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    @model_validator(mode="after")
    def _log_ignored(self):
        if self.model_extra:
            log.info("ignored request fields: %s", ", ".join(sorted(self.model_extra)))
        return self


# --- chat (https://platform.openai.com/docs/api-reference/chat/create) ---


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: str


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    @model_validator(mode="after")
    def _has_content(self):
        if self.content is None and self.role != "assistant":  # an assistant may call tools
            raise ValueError(f"a {self.role} message needs content")
        return self


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object"]


class StreamOptions(OpenAIModel):
    include_usage: StrictBool = False


Stop = str | list[str] | None
MaxTokens = Annotated[int | None, Field(ge=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class SamplingFields(OpenAIModel):
    """The sampling fields chat and completions share, and lmlab's extensions."""

    frequency_penalty: Penalty = 0.0
    n: Annotated[int, Field(ge=1, le=16)] = 1
    presence_penalty: Penalty = 0.0
    seed: int | None = None
    stop: Stop = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    # None: the served model's default (see the module docstring)
    temperature: Annotated[
        float | None, Field(ge=0, le=2, description="Default: the model's (GET /v1/models).")
    ] = None
    top_p: Annotated[
        float | None, Field(gt=0, le=1, description="Default: the model's (GET /v1/models).")
    ] = None
    user: str | None = None
    # lmlab extensions (as vLLM's)
    top_k: Annotated[
        int | None, Field(ge=0, description="Keep the k most likely tokens (0: all).")
    ] = None
    min_p: Annotated[
        float | None, Field(ge=0, le=1, description="Drop tokens below min_p x top.")
    ] = None
    repetition_penalty: Annotated[
        float | None, Field(gt=0, description="HF-style; 1 means none.")
    ] = None


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: str
    logprobs: StrictBool = False
    max_completion_tokens: MaxTokens = None
    max_tokens: MaxTokens = None
    response_format: ResponseFormat | None = None
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None


class CompletionRequest(SamplingFields):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: StrictBool = False
    logprobs: Annotated[int | None, Field(ge=0, le=5)] = None
    max_tokens: MaxTokens = 16
    suffix: str | None = None


# --- embeddings (https://platform.openai.com/docs/api-reference/embeddings/create) ---


class EmbeddingRequest(OpenAIModel):
    input: str | list[str] | list[int] | list[list[int]]
    model: str
    dimensions: Annotated[int | None, Field(ge=1)] = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


# --- responses ---


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: _id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    """The legacy shape; an echoed prompt's first token has null log-probabilities."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """An embedding request's usage: OpenAI sends no completion_tokens here."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class SamplingDefaultsCard(BaseModel):
    """What a request that leaves these sampling fields out gets, and where it comes from."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repetition_penalty: float
    source: str = Field(description="model card, generation_config.json, GGUF metadata, ...")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lmlab"
    # lmlab extension, for language models (left out for encoders)
    sampling_defaults: SamplingDefaultsCard | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
