"""`profiles check` without a cluster: parsing `scontrol show -o` records as Slurm 22.05 prints
them, each claim of a profile against such facts, and the probe's module loading run by bash
with the real environment-modules."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from launcher.cluster_facts import facts_from, parse_gres, parse_minutes
from launcher.profile import Profile
from launcher.profile_check import (array_size_line, gres_lines, interpret_probe, node_size_lines,
                                    partition_lines, probe_body)
from launcher.render import container_wrap

# `scontrol show partition -o` / `scontrol show node -o` of the test cluster (Slurm 22.05.8)
PARTITIONS = "\n".join(
    f"PartitionName={name} AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    f"DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    f"MaxTime={max_time} MinNodes=0 LLN=NO MaxCPUsPerNode={cpus} Nodes=mft-n[1-2] PriorityJobFactor=1 "
    f"PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP "
    f"TotalCPUs=192 TotalNodes=2 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    f"MaxMemPerNode={mem} TRES=cpu=192,mem=2000000M,node=2,billing=192"
    for name, max_time, cpus, mem in (("main", "UNLIMITED", 4, 8000), ("cpu", "UNLIMITED", 4, 8000),
                                      ("gpu", "2-00:00:00", "UNLIMITED", "UNLIMITED"))
)
NODES = "\n".join(
    f"NodeName={node} Arch=x86_64 CoresPerSocket=96  CPUAlloc=0 CPUEfctv=96 CPUTot=96 CPULoad=1.07 "
    f"AvailableFeatures=(null) ActiveFeatures=(null) Gres={gres} NodeAddr=10.213.0.1 NodeHostName={node} "
    "Version=22.05.8 OS=Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC Debian  RealMemory=1024000 AllocMem=0 FreeMem=20923 "
    f"Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A "
    "Partitions=main,cpu,gpu  BootTime=2026-12-05T08:10:55 SlurmdStartTime=2026-12-05T09:01:36 "
    "CfgTRES=cpu=96,mem=1000G,billing=96,gres/gpu=8 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0"
    for node, gres in (("mft-n1", "gpu:8"), ("mft-n2", "gpu:a100:4(S:0-1),gpu:v100:2"))
)
FACTS = facts_from(PARTITIONS, NODES)


def profile(**fields) -> Profile:
    return Profile(name="p", partitions={"gpu": "gpu", "cpu": "cpu"}, **fields)


@pytest.mark.parametrize("text,counts", [
    ("(null)", {}),
    ("gpu:8", {"gpu": 8}),
    ("gpu:a100:4(S:0-1),gpu:v100:2", {"gpu": 6, "gpu:a100": 4, "gpu:v100": 2}),
    ("gpu:h100:8(S:0-1),shard:h100:32", {"gpu": 8, "gpu:h100": 8, "shard": 32, "shard:h100": 32}),
])
def test_gres_strings(text, counts):
    assert parse_gres(text) == counts


@pytest.mark.parametrize("text,minutes", [("UNLIMITED", None), ("INFINITE", None), ("2-00:00:00", 2880),
                                          ("04:00:00", 240), ("00:30:30", 31)])
def test_max_time(text, minutes):
    assert parse_minutes(text) == minutes


def test_partitions_and_their_nodes_from_scontrol_records():
    assert sorted(FACTS) == ["cpu", "gpu", "main"]
    gpu = FACTS["gpu"]
    assert gpu.max_time_minutes == 2880 and gpu.max_cpus_per_node is None
    assert [n.name for n in gpu.nodes] == ["mft-n1", "mft-n2"]
    assert gpu.nodes[0].cpus == 96 and gpu.nodes[0].memory_mb == 1024000
    assert FACTS["cpu"].max_cpus_per_node == 4 and FACTS["cpu"].max_mem_per_node_mb == 8000


def test_partition_lines_name_the_missing_one_and_the_fix():
    lines = partition_lines(Profile(name="p", partitions={"gpu": "booster", "cpu": "cpu"}, gpus_per_node=4), FACTS)
    assert lines[0] == "FAIL partitions.gpu: 'booster' not found; the cluster has: cpu, gpu, main: " \
                       "set partitions.gpu to one of them"
    assert lines[1].startswith("OK   partitions.cpu: 'cpu' exists (UP, 2 nodes)")


def test_gres_per_node():
    assert gres_lines(profile(gpus_per_node=0), FACTS) == []
    # mft-n2 has gpu:6 in all (4 a100 + 2 v100): 8 per node only on mft-n1
    warn = gres_lines(profile(gpus_per_node=8), FACTS)
    assert warn[0].startswith("WARN gres: 1 of 2 nodes of partition 'gpu' have fewer than gpu:8 (mft-n2 ")
    assert gres_lines(profile(gpus_per_node=6), FACTS)[0].startswith("OK   gres: every node of partition 'gpu' (2)")
    typed = gres_lines(profile(gpus_per_node=2, gpu_request="gres", gres_type="gpu:h100"), FACTS)
    assert typed[0].startswith("FAIL gres: profile asks gpu:h100:2 per node, no node of partition 'gpu' has it")
    assert typed[0].endswith("set gres_type to a GRES the nodes have, or partitions.gpu to a partition with GPUs")
    assert gres_lines(profile(gpus_per_node=16), FACTS)[0].endswith("set gpus_per_node: 8")


def test_cpus_memory_and_time_against_the_partition_caps():
    lines = node_size_lines(profile(gpus_per_node=8, cpus_per_node=96, mem_gb_per_node=1000, max_time="3-00:00:00",
                                    max_nodes=4), FACTS)
    assert "OK   cpus_per_node 96 <= 96 on every node of 'gpu'" in lines
    assert "OK   mem_gb_per_node 1000 <= 1000 GB on every node of 'gpu'" in lines
    assert 'FAIL max_time: profile says 3-00:00:00, partition \'gpu\' allows 2-00:00:00: set max_time: "2-00:00:00"' \
        in lines
    assert "FAIL max_nodes: profile says 4, partition 'gpu' gives a job at most 2: set max_nodes: 2" in lines
    # the cpu partition caps a node at 4 CPUs and 8000 MB whatever the node has
    assert "FAIL cpus_per_node: profile says 96, nodes of 'cpu' offer 4: set cpus_per_node: 4" in lines
    assert "FAIL mem_gb_per_node: profile says 1000 GB, nodes of 'cpu' offer 7.8125 GB (8000 MB): " \
           "set mem_gb_per_node: 7" in lines
    unset = node_size_lines(Profile(name="p", partitions={"cpu": "cpu"}), FACTS)
    assert unset[0] == "WARN cpus_per_node is not set: nodes of 'cpu' offer 4; set cpus_per_node: 4 so the " \
                       "planner refuses recipes that ask for more"


def test_array_size():
    assert array_size_line(profile(max_array_size=5000), {"MaxArraySize": "1001"}).startswith(
        "FAIL max_array_size: profile says 5000, the cluster's MaxArraySize is 1001: set max_array_size: 1001")
    assert array_size_line(profile(), {}).startswith("WARN")


def test_probe_report_becomes_one_line_per_module_and_the_container(tmp_path):
    p = profile(modules=["gcc/12", "cuda/12.4", "nccl/2"], container={"type": "apptainer", "image": "/img.sif"})
    report = ["host node7", "module-ok gcc/12", "module-fail cuda/12.4 ERROR: Unable to locate a modulefile",
              "container-missing apptainer", "end"]
    lines = interpret_probe(p, report, "42", tmp_path / "log.out")
    assert lines[0] == "OK   module load gcc/12 on node7"
    assert lines[1].startswith("FAIL module load cuda/12.4 on node7: ERROR: Unable to locate a modulefile: fix")
    assert lines[2].startswith("FAIL module load nccl/2: the probe job 42 never reached it")
    assert lines[3].startswith("FAIL container: apptainer is not available on node7")


@pytest.mark.skipif(not Path("/usr/share/modules/init/bash").is_file(),
                    reason="environment-modules is installed by tests/cluster/install.sh")
def test_probe_body_loads_modules_with_environment_modules(tmp_path):
    """The probe's shell lines, run by bash with a real `module` command: a module that exists
    loads, one that does not is reported with the tool's own error."""
    (tmp_path / "modulefiles" / "mfttool").mkdir(parents=True)
    (tmp_path / "modulefiles" / "mfttool" / "1.0").write_text("#%Module1.0\nsetenv MFTTOOL_HOME /opt/mfttool\n")
    body = "\n".join(probe_body(profile(modules=["mfttool/1.0", "nosuch/9"])))
    script = f"source /usr/share/modules/init/bash\nmodule use {tmp_path / 'modulefiles'}\n{body}\n"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60).stdout
    report = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("mftlaunch-probe ")]
    lines = interpret_probe(profile(modules=["mfttool/1.0", "nosuch/9"]), report, "1", tmp_path / "x")
    assert lines[0].startswith("OK   module load mfttool/1.0 on "), lines
    assert lines[1].startswith("FAIL module load nosuch/9 on ") and "nosuch/9" in lines[1], lines


def _run_probe(p: Profile, bin_dir: Path) -> list[str]:
    """The probe's shell lines run by bash with `bin_dir` first on PATH → its OK/FAIL lines."""
    body = "\n".join(probe_body(p))
    out = subprocess.run(["bash", "-c", body], capture_output=True, text=True, timeout=60,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURMD_NODENAME": "node7"}).stdout
    report = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("mftlaunch-probe ")]
    return interpret_probe(p, report, "1", bin_dir / "log")


def test_probe_starts_the_image_with_the_jobs_own_apptainer_command(tmp_path):
    """An `apptainer` on PATH that records its argv: the probe calls it exactly as the stage jobs'
    srun line does (--nv, the binds, extra_args), and reports what it answered."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/argv\n'
                                       '[ "$6" = /good.sif ] || { echo "FATAL: could not open image $6" >&2; exit 255; }\n')
    (bin_dir / "apptainer").chmod(0o755)
    container = {"type": "apptainer", "image": "/good.sif", "mounts": ["/scratch"], "extra_args": ["--cleanenv"]}
    good = profile(container=container)
    assert _run_probe(good, bin_dir) == ["OK   container apptainer image /good.sif starts on node7"]
    assert (tmp_path / "argv").read_text() == "exec --nv --bind /scratch --cleanenv /good.sif true\n"
    wrapped = container_wrap(good, ["true"])[1]
    assert wrapped == ["apptainer", "exec", "--nv", "--bind", "/scratch", "--cleanenv", "/good.sif", "true"]
    bad = _run_probe(profile(container={**container, "image": "/bad.sif"}), bin_dir)
    assert bad[0].startswith("FAIL container apptainer image /bad.sif does not start on node7: "
                             "FATAL: could not open image /bad.sif"), bad


def test_a_site_with_only_singularity_is_told_apptainer_is_missing(tmp_path):
    """The jobs run `apptainer`, so a `singularity` alone does not pass the check."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "singularity").write_text("#!/bin/bash\nexit 0\n")
    (bin_dir / "singularity").chmod(0o755)
    lines = _run_probe(profile(container={"type": "apptainer", "image": "/img.sif"}), bin_dir)
    assert lines[0].startswith("FAIL container: apptainer is not available on node7"), lines


def test_modules_not_probed_while_something_fails_is_said(monkeypatch):
    import launcher.profile_check as profile_check

    monkeypatch.setattr(profile_check, "read_partitions", lambda: FACTS)
    monkeypatch.setattr(profile_check, "read_config", lambda: {"MaxArraySize": "1001"})
    monkeypatch.setattr(profile_check, "test_only_lines", lambda p: [])
    monkeypatch.setattr(profile_check, "probe_lines", lambda *a: pytest.fail("probed despite a FAIL"))
    lines = profile_check.check(Profile(name="p", scheduler="slurm", partitions={"cpu": "nosuch"}, modules=["gcc"]))
    assert lines[0].startswith("FAIL partitions.cpu: 'nosuch' not found")
    assert lines[-1].startswith("WARN modules and container not probed on a compute node while a line above FAILs")


def test_a_probe_is_cancelled_when_squeue_fails_while_waiting(monkeypatch):
    from launcher import probe_job, slurm

    cancelled = []
    monkeypatch.setattr(slurm, "squeue", lambda ids: (_ for _ in ()).throw(slurm.SlurmError("squeue timed out")))
    monkeypatch.setattr(slurm, "scancel", cancelled.append)
    with pytest.raises(slurm.SlurmError, match="squeue timed out"):
        probe_job.wait_or_cancel("77", lambda: False, timeout_s=60, poll_s=0)
    assert cancelled == [["77"]]
