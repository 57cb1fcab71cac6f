"""The typed configuration: one place for every knob.

Precedence, highest first: CLI flags (passed in as overrides), environment variables
(`RAG_<GROUP>_<FIELD>`, e.g. `RAG_LLM_BACKEND`, `RAG_RETRIEVAL_TOP_K`), the settings file
(`rag.toml`, or the file named by `--config` / `RAG_CONFIG`), then the defaults below.
Relative paths in the settings file are resolved against the file's folder, so the
project works the same from any working directory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from rag.errors import ConfigError

DEFAULT_CONFIG_NAME = "rag.toml"


class _Group(BaseModel):
    """A settings group: unknown keys are mistakes, so they are rejected."""

    model_config = ConfigDict(extra="forbid")


class CorpusSettings(_Group):
    path: Path = Field(Path("seeds"), description="Folder of documents to answer from.")
    max_file_mb: float = Field(20, gt=0, le=1024, description="Larger files are skipped with a warning (embedding them takes long).")
    uploads: str = Field("", description="Subfolder of the corpus folder that files added in the chat window go to (empty: the folder itself).")

    @field_validator("uploads")
    @classmethod
    def _inside(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("must be a subfolder inside the corpus folder (a relative path without '..')")
        return value


class ChromaSettings(_Group):
    mode: Literal["embedded", "http"] = Field("embedded", description="embedded: a local folder; http: a `chroma run` server.")
    path: Path = Field(Path(".rag/index"), description="Index folder: Chroma, docstore and BM25 in embedded mode; the ingest lock (and feedback) in both modes.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth_token: SecretStr | None = None
    collection: str = Field("corpus", min_length=3, max_length=54, description="Chroma collection of the chunks; "
                            "in http mode the document records are in '<collection>.docstore' (Chroma allows 63 characters).")
    refresh_s: float = Field(1.0, ge=0, le=3600, description="Least seconds between two checks of the index version "
                             "(an ingest by another process or replica), then BM25 and the document records are reloaded.")


class ChunkingSettings(_Group):
    chunk_size: int = Field(64, ge=16, le=4096, description="Tokens per chunk (SentenceSplitter).")
    chunk_overlap: int = Field(0, ge=0, le=1024)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class RetrievalSettings(_Group):
    mode: Literal["vector", "hybrid"] = Field("hybrid", description="hybrid: BM25 and vector search fused by reciprocal rank.")
    vector_weight: float = Field(1.0, ge=0, le=10, description="Weight of the vector ranking in the fusion.")
    bm25_weight: float = Field(1.0, ge=0, le=10, description="Weight of the BM25 ranking in the fusion.")
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal rank fusion constant.")
    dedup: bool = Field(True, description="Fold near-duplicate chunks (the later ones' sources stay listed).")
    rerank: bool = Field(True, description="Re-rank by the share of the question's words a chunk holds.")
    mmr: bool = Field(True, description="Maximal marginal relevance for the vector ranking (more diverse chunks).")
    mmr_threshold: float = Field(0.5, ge=0, le=1, description="MMR balance: 1 = relevance only, 0 = diversity only.")
    top_k: int = Field(6, ge=1, le=50, description="Passages put in the prompt at most.")
    candidates: int = Field(12, ge=1, le=200, description="Chunks fetched before de-duplication and budgeting.")
    context_tokens: int = Field(250, ge=50, le=32000, description="Token budget for the passages in the prompt.")
    window_tokens: int = Field(96, ge=0, le=32000, description="Each of the window_passages best passages is read on into the "
                               "chunks after it (then before it) up to this many tokens, within context_tokens; 0: chunks as retrieved.")
    window_passages: int = Field(2, ge=0, le=50, description="How many of the best passages are widened (window_tokens).")
    min_score: float = Field(0.3, ge=-1, le=1, description="Best passage below this cosine similarity: refuse without asking the LLM.")
    min_passage_score: float = Field(0.2, ge=-1, le=1, description="Passages less similar than this are left out of the prompt.")
    broad_context_tokens: int = Field(
        500, ge=50, le=32000, description="Token budget for the passages of a summary, overview, comparison, how-to or "
        "explanation (rag.kinds): whole documents, both sides, the text around a step."
    )


class AnswerSettings(_Group):
    max_question_chars: int = Field(2000, ge=10, le=100000, description="Longer questions are cut, with a notice.")
    history_turns: int = Field(6, ge=0, le=50, description="Earlier messages used to rewrite a follow-up question.")
    broad_max_tokens: int = Field(200, ge=16, le=4096, description="Longest answer to a broad question (bullets, steps, a paragraph per side); "
                                  "a lookup keeps llm.max_tokens.")
    min_support: float = Field(0.45, ge=0, le=1, description="Least support score for an answer sentence to be cited.")
    max_uncovered_share: float = Field(0.45, ge=0, le=1, description="Refuse when more of the question's subject words than this are missing from the cited passages.")
    min_synonym_similarity: float = Field(0.55, ge=-1, le=1, description="A question word counts as found when a passage word is this similar (embeddings).")
    support_check: Literal["auto", "lexical"] = Field(
        "auto", description="auto: the LLM judges whether each quote states its sentence (yes/no log-probabilities), "
        "where the backend gives them; lexical: shared words and names only."
    )
    support_threshold: float = Field(
        0.68, ge=0, le=1, description="Least support (the LLM's P(yes) times the share of the sentence's words its quotes hold) "
        "for a sentence to be shown ✅. Chosen on eval/support_pairs.yaml by bench/verifier.py."
    )


LLMBackend = Literal["embedded", "openai", "openai-compatible", "ollama", "mock"]
EmbedBackend = Literal["local", "openai", "openai-compatible"]


class LLMSettings(_Group):
    backend: LLMBackend = Field("embedded", description="mock is a deterministic extractive stand-in for tests.")
    model: str | None = Field(None, description="Embedded: preset or GGUF path (default qwen2.5-coder-1.5b); openai: default gpt-4o-mini; servers: the model name (openai-compatible: the first one listed).")
    base_url: str | None = None
    api_key: SecretStr | None = None
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(96, ge=1, le=4096)
    context_window: int = Field(2048, ge=256, le=131072)
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads for the embedded model (default: all cores).")
    extra_buffers: bool = Field(
        False, description="Embedded model: load weights into llama.cpp's extra buffer types (CPU repack; never AMX, "
        "which `make setup` leaves out). Off: faster prefill, slower decode; measured by bench/cpu_backend.py."
    )
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(1, ge=0, le=10)


class EmbeddingSettings(_Group):
    backend: EmbedBackend = "local"
    model: str = Field("all-MiniLM-L6-v2", description="all-MiniLM-L6-v2 (bundled) or a local model folder; the server's model name otherwise.")
    base_url: str | None = None
    api_key: SecretStr | None = None
    batch_size: int = Field(64, ge=1, le=2048)


class EvalSettings(_Group):
    testset: Path = Field(Path("eval/testset.yaml"), description="Default test set of `rag eval`.")
    thresholds: Path = Field(Path("eval/thresholds.toml"), description="Metric limits of the CI gate (`rag eval --gate`).")
    support_pairs: Path | None = Field(
        Path("eval/support_pairs.yaml"), description="Hand-labelled (sentence, quote, supported) pairs: `rag eval` reports the "
        "entailment check's precision and recall on them (when the backend gives log-probabilities); empty: not measured."
    )

    @field_validator("support_pairs", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        """`RAG_EVAL_SUPPORT_PAIRS=` (empty) turns the measurement off (~3 min a run on a slow CPU)."""
        return None if isinstance(value, str) and not value.strip() else value
    judge_backend: LLMBackend | None = Field(None, description="LLM-as-judge metrics (off when unset).")
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_api_key: SecretStr | None = None

    def judge(self) -> LLMSettings | None:
        """The judge model's LLM settings, or None when no judge is configured."""
        if self.judge_backend is None:
            return None
        return LLMSettings(backend=self.judge_backend, model=self.judge_model, base_url=self.judge_base_url,
                           api_key=self.judge_api_key, max_tokens=256)


class ServerSettings(_Group):
    """`rag serve`: where it listens and what it lets in (rag/server.py)."""

    host: str = Field("127.0.0.1", description="Address to listen on; any but loopback needs API keys.")
    port: int = Field(8090, ge=1, le=65535)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys a request must bring as `Authorization: Bearer <key>` "
        "(RAG_SERVER_API_KEYS: comma-separated); none: no key is asked for."
    )
    api_keys_file: Path | None = Field(None, description="A file of further keys, one a line (# comments).")
    max_request_bytes: int = Field(1_048_576, ge=1024, le=2**30, description="Larger request bodies get HTTP 413.")
    rate_limit_per_minute: int = Field(60, ge=0, le=1_000_000, description="/v1 requests per API key in any minute; more get "
                                       "HTTP 429. 0: no limit (nor is there one without keys: all callers are on this machine).")
    max_concurrent: int = Field(8, ge=1, le=32, description="Answers computed at once; later requests wait their turn "
                                "(each holds a worker thread, of which there are 40).")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """RAG_SERVER_API_KEYS=key1,key2 (a list in the settings file)."""
        return [key.strip() for key in value.split(",") if key.strip()] if isinstance(value, str) else value


class Settings(BaseSettings):
    """Everything the pipeline reads. Groups mirror the sections of `rag.toml`."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        case_sensitive=False,
    )

    corpus: CorpusSettings = CorpusSettings()
    chroma: ChromaSettings = ChromaSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMSettings = LLMSettings()
    embed: EmbeddingSettings = EmbeddingSettings()
    eval: EvalSettings = EvalSettings()
    server: ServerSettings = ServerSettings()
    cache_dir: Path = Field(Path.home() / ".cache" / "rag", description="Where joined model files are kept (outside the repo).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="Least level of the rag.* log lines on stderr; INFO traces each answer's stages (retrieved, checking, answered or refused)."
    )

    @model_validator(mode="after")
    def _prompt_fits_the_window(self) -> Settings:
        """Passages, the fixed prompt (~300 tokens with the question) and the answer must fit the LLM's window."""
        needed = self.retrieval.context_tokens + self.llm.max_tokens + 300
        if needed > self.llm.context_window:
            raise ValueError(
                f"retrieval.context_tokens ({self.retrieval.context_tokens}) + llm.max_tokens ({self.llm.max_tokens}) + 300 "
                f"must fit llm.context_window ({self.llm.context_window})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings


def _read_file(path: Path) -> dict[str, Any]:
    """Parse the settings file and anchor its relative paths at the file's folder."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc}).") from exc
    base = path.resolve().parent
    for group, key in (("corpus", "path"), ("chroma", "path"), ("eval", "testset"), ("eval", "thresholds"), ("server", "api_keys_file")):
        value = data.get(group, {}).get(key) if isinstance(data.get(group), dict) else None
        if isinstance(value, str):
            data[group][key] = str((base / Path(value).expanduser()))
    if isinstance(data.get("cache_dir"), str):
        data["cache_dir"] = str(base / Path(data["cache_dir"]).expanduser())
    return data


def find_config(explicit: str | Path | None = None) -> Path | None:
    """The settings file in use: --config, else RAG_CONFIG, else ./rag.toml if present."""
    chosen = explicit or os.environ.get("RAG_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"Settings file {path} does not exist.")
        return path
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.is_file() else None


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "(settings)"
    env = "RAG_" + "_".join(str(p) for p in error["loc"][:2]).upper() if error["loc"] else ""
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    hint = f" (settings file or {env})" if env else ""
    return f"- {field}{shown}: {error['msg']}{hint}"


class _FileSource(PydanticBaseSettingsSource):
    """The parsed settings file as a pydantic-settings source, ranked below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def load_settings(config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build Settings from overrides > environment > file > defaults; errors name the field and the allowed values."""
    path = find_config(config)
    file_data = _read_file(path) if path else {}

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_: Any):  # type: ignore[override]
            return init_settings, env_settings, _FileSource(settings_cls, file_data)

    try:
        loaded = _Loaded(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path)) from exc
    return Settings.model_construct(**dict(loaded))


def _format_errors(exc: ValidationError, path: Path | None) -> str:
    where = f" (settings file: {path})" if path else ""
    lines = [_describe(err) for err in exc.errors()]
    return f"Invalid configuration{where}:\n" + "\n".join(lines)
