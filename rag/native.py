"""The installed llama.cpp: what it was compiled with, whether it holds AMX code, how models load.

ggml's AMX kernels crash with SIGSEGV at the first inference on many virtualised Intel CPUs
with AMX (`ldtilecfg` in `ggml_backend_amx_mul_mat`, llama.cpp #20824). `make setup` builds
llama.cpp without AMX; the model is also loaded without llama.cpp's extra buffer types (see
`use_extra_buffers`), the only path that reaches AMX kernels. This module lets `rag doctor`
and the tests check both on any machine, with or without AMX.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

# Instructions only ggml's AMX backend uses; any of them in libggml-cpu means AMX code was compiled in.
AMX_INSTRUCTIONS = re.compile(r"\b(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilezero|tilerelease|tdpb[a-z0-9]*)\b")


def system_info() -> str:
    """llama.cpp's own summary of its build: `CPU : SSE3 = 1 | AVX512 = 1 | …` (importing runs no model code)."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()


def compiled_features(info: str | None = None) -> list[str]:
    """The CPU features the installed llama.cpp was compiled for (those it reports `= 1`)."""
    return re.findall(r"([A-Z][A-Z0-9_]+) = 1", info if info is not None else system_info())


def amx_compiled(info: str | None = None) -> bool:
    return any(f.startswith("AMX") for f in compiled_features(info))


def cpu_library() -> Path | None:
    """The installed libggml-cpu (where ggml's CPU and AMX kernels live)."""
    import llama_cpp

    found = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu.so*"))
    return found[0] if found else None


def amx_instruction_count(library: Path) -> int | None:
    """AMX tile instructions in a shared library's code, by disassembly; None without objdump (binutils)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True, check=True).stdout
    return len(AMX_INSTRUCTIONS.findall(listing))


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        return " amx_tile" in cpuinfo.read_text()
    except OSError:
        return False


def use_extra_buffers(enabled: bool) -> None:
    """Set whether llama.cpp loads weights into extra buffer types (CPU repack, AMX) in this process.

    llama-cpp-python's Llama takes no such argument: it reads `llama_model_default_params()`
    when it loads, so the default itself is wrapped. Called only in the model's worker process.
    Measured in one run (bench/cpu_backend.py, 2 threads, AMX-free build): without extra buffers
    prefill 163 tok/s and decode 12.6 tok/s, with them (CPU repack) 119 and 16.2; our prompts are
    mostly prefill, so off answers faster (TTFT p50 1.84 s vs 2.43 s, total 3.16 s vs 3.52 s)
    and is the default (`llm.extra_buffers`). Off also keeps AMX kernels out of reach of a
    native build that holds them.
    """
    import llama_cpp.llama_cpp as lib

    original = getattr(lib.llama_model_default_params, "rag_original", lib.llama_model_default_params)

    def params():  # noqa: ANN202
        value = original()
        value.use_extra_bufts = enabled
        return value

    params.rag_original = original  # type: ignore[attr-defined]  # (not __wrapped__: llama_cpp's own points at a stub)
    lib.llama_model_default_params = params
