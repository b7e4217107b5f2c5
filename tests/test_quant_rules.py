"""`mftlaunch validate` refuses every quantisation x ZeRO x offload combination that cannot run
(launcher/quant_rules.py), one test per rule: exit 1, the rule's name, the file and line, the
fields involved and the fix; the combinations that do run are accepted."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from launcher import quant_rules
from launcher.cli import main

REPO = Path(__file__).resolve().parent.parent


def write_recipe(tmp_path: Path, train: dict, dtype: str = "bf16") -> Path:
    stage = {"datasets": [{"path": str(REPO / "recipes" / "data" / "tiny_mft" / "codegen")}], "peft_type": "qlora",
             "resources": {"gpus_per_node": 0}}
    stage.update(train)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "rules", "model": {"path": "builtin:tiny-llama", "model_name": "tiny",
                                                                "dtype": dtype},
                                    "stages": {"train": stage}}, sort_keys=False))
    return path


def validate(path: Path, capsys) -> tuple[int, str]:
    code = main(["validate", str(path), "--profile", "local"])
    out, err = capsys.readouterr()
    return code, out + err


def deepspeed(stage: int, mixed: str = "bf16", **more) -> dict:
    return {"backend": "deepspeed", "zero_stage": stage, "mixed_precision": mixed, **more}


REFUSED = {
    "qlora-8bit-zero3": ({"quantization": {"bits": 8}, "distributed": deepspeed(3)},
                         ["quantization.bits: 8", "zero_stage: 3", "fix: quantization.bits: 4"]),
    "qlora-zero3-quant-storage": ({"quantization": {"quant_storage": "fp16"}, "distributed": deepspeed(3)},
                                  ["quant_storage equal to the compute dtype (bf16), got fp16",
                                   "fix: quantization.quant_storage: bf16"]),
    "qlora-zero3-16bit-save": ({"distributed": deepspeed(3, zero3_save_16bit_model=False)},
                               ["zero3_save_16bit_model: true", "fix:"]),
    "qlora-deepspeed-cast": ({"quantization": {"quant_storage": "fp32"}, "distributed": deepspeed(2)},
                             ["quant_storage: fp32 with DeepSpeed mixed_precision: bf16",
                              "fix: quantization.quant_storage: bf16"]),
    "qlora-quant-storage-4bit-only": ({"quantization": {"bits": 8, "quant_storage": "bf16"}, "distributed": deepspeed(2)},
                                      ["quant_storage applies to 4-bit weights only", "fix:"]),
    "offload-optimizer-needs-zero": ({"distributed": deepspeed(0, offload_optimizer="cpu")},
                                     ["offload_optimizer: cpu with zero_stage: 0", "fix: zero_stage: 2"]),
}


def test_every_rule_has_a_refusal_test() -> None:
    assert sorted(REFUSED) == sorted(rule.name for rule in quant_rules.RULES)


@pytest.mark.parametrize("rule", sorted(REFUSED))
def test_validate_refuses(rule: str, tmp_path: Path, capsys) -> None:
    train, expected = REFUSED[rule]
    path = write_recipe(tmp_path, train)
    code, text = validate(path, capsys)
    assert code == 1, text
    line = path.read_text().splitlines().index("  train:") + 1
    assert f"rule {rule}:" in text and f"{path}:{line}: stages.train" in text, text
    for want in expected:
        assert want in text, f"{want!r} not in:\n{text}"
    assert "Traceback" not in text


def test_zero3_storage_is_checked_against_the_model_dtype_without_mixed_precision(tmp_path: Path, capsys) -> None:
    """mixed_precision: no computes in model.dtype, which only the whole recipe knows."""
    train = {"quantization": {"quant_storage": "bf16"}, "distributed": deepspeed(3, "no")}
    code, text = validate(write_recipe(tmp_path, train, dtype="fp32"), capsys)
    assert code == 1 and "rule qlora-zero3-quant-storage" in text and "compute dtype (fp32), got bf16" in text, text
    assert validate(write_recipe(tmp_path, train, dtype="bf16"), capsys)[0] == 0


@pytest.mark.parametrize("train", [
    {"distributed": deepspeed(2)},  # the flagship: nf4 + ZeRO-2, bf16
    {"quantization": {"bits": 8}, "distributed": deepspeed(2)},
    {"quantization": {"quant_storage": "bf16"}, "distributed": deepspeed(3)},
    {"distributed": deepspeed(3)},  # quant_storage unset: the compute dtype
    {"distributed": deepspeed(2, offload_optimizer="cpu")},
    {"distributed": deepspeed(3, offload_param="cpu", offload_optimizer="cpu")},
    {"quantization": {"quant_storage": "fp32"}, "distributed": deepspeed(2, "no")},  # no mixed precision: no cast
], ids=["nf4-zero2", "8bit-zero2", "nf4-zero3-storage", "nf4-zero3-default-storage", "zero2-offload-optimizer", "zero3-offload-param",
        "zero2-no-mixed-fp32-storage"])
def test_validate_accepts(train: dict, tmp_path: Path, capsys) -> None:
    code, text = validate(write_recipe(tmp_path, train), capsys)
    assert code == 0, text
