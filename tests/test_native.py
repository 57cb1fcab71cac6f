"""The installed llama.cpp holds no AMX code and the model loads without extra buffer types.

ggml's AMX kernels crash (SIGSEGV) at the first inference on many AMX machines (llama.cpp
#20824). These checks fail on a native build with AMX and on a load path that could reach it,
on any machine: the compile check asks GCC about an AMX CPU whatever CPU runs the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rag import native

ROOT = Path(__file__).resolve().parent.parent
PROBE = "#if defined(__AMX_TILE__) || defined(__AMX_INT8__) || defined(__AMX_BF16__)\n#error AMX enabled\n#endif\nint x;\n"


def _setup_no_amx_flags() -> list[str]:
    """The flags `make setup` builds llama.cpp with (read from the Makefile, the one place they live)."""
    match = re.search(r"^NO_AMX\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile names no NO_AMX flags for the llama.cpp build"
    return match.group(1).split()


def _compiles_without_amx(tmp_path: Path, flags: list[str]) -> bool:
    source = tmp_path / "probe.c"
    source.write_text(PROBE)
    done = subprocess.run(["cc", "-march=sapphirerapids", *flags, "-c", str(source), "-o", str(tmp_path / "probe.o")],
                          capture_output=True, text=True)
    return done.returncode == 0


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: setup could not have built llama.cpp either")
def test_setup_build_flags_turn_amx_off_even_on_an_amx_cpu(tmp_path):
    # -march=sapphirerapids stands for -march=native on an AMX CPU, whatever CPU runs this test.
    assert not _compiles_without_amx(tmp_path, []), "the probe must see AMX on a Sapphire Rapids target"
    assert _compiles_without_amx(tmp_path, _setup_no_amx_flags())
    assert 'CMAKE_C_FLAGS="$(NO_AMX)"' in (ROOT / "Makefile").read_text()
    assert 'CMAKE_CXX_FLAGS="$(NO_AMX)"' in (ROOT / "Makefile").read_text()


def test_installed_llama_cpp_was_compiled_without_amx():
    info = native.system_info()
    assert "CPU :" in info, info
    assert not native.amx_compiled(info), f"llama.cpp was compiled with AMX: {info}"


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_installed_ggml_cpu_library_holds_no_amx_instructions():
    library = native.cpu_library()
    assert library is not None and library.is_file()
    assert native.amx_instruction_count(library) == 0


def test_amx_detection_reads_llama_cpp_features():
    native_amx = "CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | REPACK = 1 |"
    assert native.amx_compiled(native_amx)
    assert not native.amx_compiled(native_amx.replace("AMX_INT8 = 1", "AMX_INT8 = 0"))
    assert native.compiled_features("CPU : SSE3 = 1 | F16C = 0 | AVX2 = 1") == ["SSE3", "AVX2"]


def test_doctor_reports_the_build_and_refuses_a_reachable_amx_path(monkeypatch):
    from rag.doctor import _llama_build
    from rag.errors import RagError

    line = _llama_build(extra_buffers=False)
    assert "AMX off in the build" in line and "extra buffer types off" in line and "compiled for" in line
    monkeypatch.setattr(native, "system_info", lambda: "CPU : AVX512 = 1 | AMX_INT8 = 1 |")
    assert "AMX kernels compiled in but unreachable" in _llama_build(extra_buffers=False)
    with pytest.raises(RagError, match="compiled with AMX"):
        _llama_build(extra_buffers=True)


@pytest.mark.llm
def test_worker_loads_the_model_without_extra_buffer_types(tmp_path):
    from rag.backends import build_llm
    from rag.settings import LLMSettings

    llm = build_llm(LLMSettings(model="smollm2-135m"), tmp_path)
    try:
        info = llm.system_info()
        assert "use_extra_bufts = 0" in info and not native.amx_compiled(info)
        assert llm.pid is not None and llm.complete("Say OK.").text.strip()
    finally:
        llm.close()
