from aniportrait import machine

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
bogus line without a colon

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""


def test_parse_cpuinfo_takes_the_first_processor():
    info = machine.parse_cpuinfo(CPUINFO)
    assert info["name"] == "AMD EPYC 9B14"
    assert info["flags"] == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}


def test_bf16_matmul_path_prefers_amx():
    assert machine.bf16_matmul_path({"avx512_bf16", "amx_bf16", "amx_tile"}) == "AMX-BF16"
    assert machine.bf16_matmul_path({"avx512_bf16"}) == "AVX512-BF16"
    assert machine.bf16_matmul_path({"avx2"}) == "none"


def test_unreadable_cpuinfo_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "missing")
    assert machine.bf16_matmul_path() == "unknown"
    assert isinstance(machine.cpu_name(), str) and machine.cpu_name()


def test_cpuinfo_is_read_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    monkeypatch.setattr(machine, "CPUINFO", path)
    assert machine.cpu_name() == "AMD EPYC 9B14"
    assert machine.bf16_matmul_path() == "AVX512-BF16"
