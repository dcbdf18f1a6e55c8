"""The wire format: pydantic models that mirror OpenAI's API, in the order of its reference.

Reference: https://platform.openai.com/docs/api-reference (chat, completions, embeddings,
models). Fields OpenAI defines that lmlab does not act on are accepted and ignored; unknown
fields are ignored and logged (as vLLM does). lmlab's extensions come after OpenAI's fields.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger("lmlab.serve")


class OpenAIModel(BaseModel):
    """Base of every request: unknown fields are ignored and logged, not rejected."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_ignored(self):
        if self.model_extra:
            log.info("ignored request fields: %s", ", ".join(sorted(self.model_extra)))
        return self


# --- chat (https://platform.openai.com/docs/api-reference/chat/create) ---


class TextPart(BaseModel):
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


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object"]


class StreamOptions(BaseModel):
    include_usage: bool = False


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
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    user: str | None = None
    # lmlab extensions (as vLLM's)
    top_k: Annotated[int, Field(ge=0, description="Keep the k most likely tokens (0: all).")] = 0
    min_p: Annotated[float, Field(ge=0, le=1, description="Drop tokens below min_p x top.")] = 0.0
    repetition_penalty: Annotated[float, Field(gt=0, description="HF-style; 1 means none.")] = 1.0


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: str
    logprobs: bool = False
    max_completion_tokens: MaxTokens = None
    max_tokens: MaxTokens = None
    response_format: ResponseFormat | None = None
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None


class CompletionRequest(SamplingFields):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
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
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
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


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lmlab"


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
