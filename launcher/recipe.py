"""The recipe: what to run. Plain pydantic models, read by the launcher and by the jobs.

A recipe names a model and a subset of the stages train → merge → generate → evaluate → collect,
keyed by stage name and run in that order. Training data directories are `datasets`; code
benchmarks are `benchmarks` (the word "task" is left to Slurm). Every field of MFTCoder's training
config has a home here; see docs/RECIPES.md for the mapping.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import Field, field_validator, model_validator

from launcher import contract, quant_rules
from launcher.contract import PromptFormatName
from launcher.validation import StrictModel, validate_model
from launcher.yamlsource import ConfigError, YamlSource, load_yaml

Dtype = Literal["bf16", "fp16", "fp32"]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_time_minutes(value: Union[int, str]) -> int:
    """Slurm time formats → minutes: MM, HH:MM:SS, D-HH[:MM[:SS]]; an int is minutes."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        hours, minutes, seconds = parts[0], parts[1], parts[2]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts[0], parts[1], parts[2]
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


class Resources(StrictModel):
    """What one job (or one array element) of a stage asks Slurm for."""

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: Optional[int] = Field(None, ge=1)
    mem_gb: Optional[float] = Field(None, gt=0)
    time: Union[int, str] = "01:00:00"
    partition: Optional[str] = None
    constraint: Optional[str] = Field(None, description="node features, e.g. a GPU type; overrides the profile's")
    max_restarts: int = Field(3, ge=0, description="requeue cap after USR2 / preemption")

    @field_validator("time")
    @classmethod
    def _time_parses(cls, value: Union[int, str]) -> Union[int, str]:
        try:
            minutes = parse_time_minutes(value)
        except (ValueError, IndexError):
            raise ValueError("time must be minutes or Slurm's [D-]HH:MM:SS, e.g. '04:00:00'") from None
        if minutes <= 0:
            raise ValueError("time must be positive")
        return value

    @property
    def time_minutes(self) -> int:
        return parse_time_minutes(self.time)

    @property
    def tasks_per_node(self) -> int:
        """One Slurm task per GPU; a CPU job runs one task per node."""
        return max(1, self.gpus_per_node)


class ModelSpec(StrictModel):
    path: str = Field(description="HF model directory (or a tiny model built by `jobs.tiny_model`)")
    model_name: str = Field(description="used in output file names, e.g. generations_<task>_<model_name>.json")
    model_type: Literal[
        "llama", "codellama", "qwen", "qwen2", "starcoder", "gpt_bigcode", "gpt_neox",
        "deepseek", "mistral", "mixtral",
    ] = "llama"
    tokenizer_path: Optional[str] = None
    dtype: Dtype = "bf16"
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    trust_remote_code: bool = False

    @field_validator("model_name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("model_name may hold letters, digits, '_', '.', '-' only")
        return value


class SweepModel(StrictModel):
    """One model of an eval-only sweep (`models:`); unset fields come from the recipe's `model:`
    when there is one, else from ModelSpec's defaults, and the prompt from `stages.generate`."""

    name: str = Field(description="the model's name in file names and tables")
    path: str = Field(description="HF model directory, or builtin:tiny-llama")
    model_type: Optional[str] = None
    tokenizer_path: Optional[str] = None
    dtype: Optional[Dtype] = None
    trust_remote_code: Optional[bool] = None
    prompt_format: Optional[PromptFormatName] = None
    prefix: Optional[str] = None
    suffix: Optional[str] = None
    system: Optional[str] = None
    eos: Optional[list[str]] = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("name may hold letters, digits, '_', '.', '-' only (it becomes part of file names)")
        return value

    def spec(self, base: Optional[ModelSpec]) -> ModelSpec:
        """The full ModelSpec of this entry: its own fields over `base` (the recipe's `model:`)."""
        fields = base.model_dump() if base else {}
        fields.update(path=self.path, model_name=self.name)
        if base is not None and self.path != base.path:
            fields["tokenizer_path"] = None  # the base's tokenizer belongs to another model
        for key in ("model_type", "tokenizer_path", "dtype", "trust_remote_code"):
            if getattr(self, key) is not None:
                fields[key] = getattr(self, key)
        return ModelSpec.model_validate(fields)

    @property
    def prompt_overrides(self) -> dict[str, Any]:
        """The generate-stage prompt fields this entry sets."""
        keys = ("prompt_format", "prefix", "suffix", "system", "eos")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class EveryKth(StrictModel):
    """Every k-th periodic checkpoint (k x train.checkpointing_steps, 2k x ..., up to max_steps)."""

    every: int = Field(ge=1)


CheckpointSelector = Union[int, Literal["best", "last"]]


class DatasetSpec(StrictModel):
    """A directory of chat_rounds JSONL files (or one .jsonl); its name is the MFT task name."""

    path: str
    name: Optional[str] = None
    weight: float = Field(1.0, gt=0)

    @property
    def task_name(self) -> str:
        return self.name or Path(self.path.rstrip("/")).name.removesuffix(".jsonl")


class LoraSpec(StrictModel):
    rank: int = Field(96, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Union[Literal["all-linear"], list[str], None] = Field(
        None, description="None: the model family's default list"
    )


class QuantizationSpec(StrictModel):
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    quant_storage: Optional[Dtype] = Field(None, description="None: equal to the compute dtype")


class CobaSpec(StrictModel):
    warmup_steps: int = Field(100, ge=0)
    history_length: int = Field(200, ge=1)
    tau: float = Field(5.0, gt=0)
    update_interval: int = Field(1, ge=1)
    sample_valid_num: int = Field(1, ge=1)


class CustomTemplate(StrictModel):
    """Role markers of a chat template not built in. `{}` is not used: markers are literal text.

    MFTCoder's free-form `role_markers` {system: S, user: U, assistant: A} are
    {system_prefix: S, human_prefix: U, bot_prefix: A, turn_end: "\\n", bot_suffix: "\\n",
    after_bot_end: "\\n"} (docs/TRAINING.md)."""

    system_prefix: str = ""
    human_prefix: str
    bot_prefix: str
    turn_end: str = Field("", description="appended after every system/human turn")
    bot_end: Optional[str] = Field(None, description="appended after bot turns; None: the eos token")
    bot_suffix: str = Field("", description="trained text after the bot content, before bot_end (MFTCoder: \\n)")
    after_bot_end: str = Field("", description="untrained text after every bot_end, a piece of its own (MFTCoder: \\n)")


class EarlyStopping(StrictModel):
    enabled: bool = False
    patience: int = Field(5, ge=1)


class DistributedSpec(StrictModel):
    backend: Literal["deepspeed", "ddp", "none"] = "deepspeed"
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_param: Literal["none", "cpu"] = "none"
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    gradient_clipping: Optional[float] = Field(1.0, gt=0)
    zero3_save_16bit_model: bool = True
    init_timeout_s: int = Field(1800, ge=10)


class TrainStage(StrictModel):
    datasets: list[DatasetSpec] = Field(min_length=1)
    template: Literal["chatml", "codefuse", "mftcoder", "custom"] = "chatml"
    custom_template: Optional[CustomTemplate] = None
    validation_split: float = Field(0.02, ge=0, lt=1)
    padding_mode: Literal["padding", "dynamic", "pack"] = "dynamic"
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="samples over seq_length + 1 tokens: truncate (keeps their start) or drop "
                                "(MFTCoder's UniformEncoder drops them)")
    peft_type: Literal["lora", "qlora", "full"] = "lora"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    quantization: Optional[QuantizationSpec] = None
    weighted_loss_mode: Literal["case1", "case2", "case3", "case4", "coba"] = "case3"
    coba: CobaSpec = Field(default_factory=CobaSpec)
    moe_aux_loss_coef: Optional[float] = Field(
        None, ge=0, description="weight of the MoE router load-balancing loss added to the MFT loss (MFTCoder adds it); "
                                "None: the model config's router_aux_loss_coef for MoE models, 0 for dense ones; 0: off")
    epochs: int = Field(1, ge=1)
    max_steps: Optional[int] = Field(None, ge=1)
    per_device_train_batch_size: int = Field(2, ge=1)
    per_device_eval_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    min_lr: float = Field(5e-6, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    lr_scheduler_type: Literal["cosine", "linear", "constant"] = "cosine"
    num_warmup_steps: Union[int, float] = Field(0, ge=0, description="steps, or a fraction of all steps if < 1")
    seq_length: int = Field(4096, ge=8)
    log_interval: int = Field(10, ge=1)
    checkpointing_steps: int = Field(100, ge=1)
    saving_limit: Optional[int] = Field(2, ge=1)
    evaluation_steps: int = Field(100, ge=1)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    seed: int = 1234
    gradient_checkpointing: bool = True
    stop_margin_min: int = Field(5, ge=0, description="stop and save this long before the time limit")
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    resources: Resources = Field(default_factory=lambda: Resources(gpus_per_node=1))

    @model_validator(mode="after")
    def _cross_fields(self) -> "TrainStage":
        names = [d.task_name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset names must be unique, repeated: {', '.join(dupes)} (set `name:` on one of them)")
        if self.template == "custom" and self.custom_template is None:
            raise ValueError("template 'custom' needs a `custom_template:` block (human_prefix, bot_prefix, ...)")
        if self.template != "custom" and self.custom_template is not None:
            raise ValueError(f"`custom_template` is only used with template: custom (template is '{self.template}')")
        if self.min_lr > self.learning_rate:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed learning_rate ({self.learning_rate})")
        weighted = [i for i, d in enumerate(self.datasets) if d.weight != 1.0]
        if self.weighted_loss_mode == "coba" and weighted:
            raise ValueError(f"datasets[{weighted[0]}].weight is not used with weighted_loss_mode: coba (CoBa sets the "
                             "task weights, starting from equal ones as MFTCoder does); remove it")
        if self.peft_type == "qlora" and self.quantization is None:
            self.quantization = QuantizationSpec()
        if self.peft_type != "qlora" and self.quantization is not None:
            raise ValueError("`quantization` is only used with peft_type: qlora")
        dist = self.distributed
        broken = quant_rules.violations(self)
        if broken:
            raise ValueError("\n  ".join(broken))
        if dist.backend != "deepspeed" and (dist.zero_stage or dist.offload_optimizer != "none" or dist.offload_param != "none"):
            raise ValueError(f"zero_stage/offload need backend: deepspeed (backend is '{dist.backend}'); set zero_stage: 0")
        if dist.offload_param == "cpu" and dist.zero_stage != 3:
            raise ValueError("distributed.offload_param: cpu needs zero_stage: 3")
        return self

    @property
    def is_peft(self) -> bool:
        return self.peft_type in ("lora", "qlora")


class MergeStage(StrictModel):
    checkpoint: Optional[Literal["best", "last"]] = Field(
        None, description="one model: best (the default) = lowest validation loss when evaluation ran, or last")
    checkpoints: Union[Literal["best", "last", "all"], EveryKth, list[CheckpointSelector], None] = Field(
        None, description="a sweep: merge and evaluate several checkpoints (all, {every: k}, [200, 400, best])"
    )
    qlora_base: Literal["dequantized", "original"] = Field(
        "dequantized",
        description="QLoRA: merge the adapter into the 4-bit base dequantised (the model that was trained and "
                    "validated) or into the original full-precision weights",
    )
    resources: Resources = Field(default_factory=lambda: Resources(cpus_per_task=4))

    @model_validator(mode="after")
    def _one_way(self) -> "MergeStage":
        if self.checkpoints is not None and self.checkpoint is not None:
            raise ValueError("set either checkpoint (one model) or checkpoints (a sweep), not both")
        if isinstance(self.checkpoints, list):
            if not self.checkpoints:
                raise ValueError("checkpoints: the list is empty; name steps (e.g. [200, 400]), best or last")
            bad = [s for s in self.checkpoints if isinstance(s, int) and s < 1]
            if bad:
                raise ValueError(f"checkpoints: steps must be >= 1, got {bad}")
            if len(set(map(str, self.checkpoints))) != len(self.checkpoints):
                raise ValueError("checkpoints: a step or selector is listed twice")
        return self

    @property
    def is_sweep(self) -> bool:
        return self.checkpoints is not None


class BalanceSpec(StrictModel):
    """How `shards: auto` cuts a stage's work into array elements of near-equal estimated cost.
    At most one target; none: as many elements as (model, benchmark) pairs."""

    elements: Optional[int] = Field(None, ge=1, description="this many array elements")
    minutes_per_element: Optional[float] = Field(None, gt=0, description="elements of about this estimated wall time")
    startup_s: Optional[float] = Field(None, ge=0, description="per element and model: start, model load, warm-up")

    @model_validator(mode="after")
    def _one_target(self) -> "BalanceSpec":
        if self.elements is not None and self.minutes_per_element is not None:
            raise ValueError("give either elements or minutes_per_element, not both")
        return self


class GenerationCost(BalanceSpec):
    """The generation cost model: seconds = prefill x prompt tokens + decode x new tokens, per sample.
    Defaults: DESIGN.md's measured 525 tok/s (HF generate, batch 64, 7B, one H100) and an assumed
    ~17k prompt tok/s; set your own from benchmarks/generation.py."""

    decode_ms_per_token: float = Field(1000 / 525, gt=0)
    prefill_ms_per_token: float = Field(0.06, ge=0)


class GenerateStage(StrictModel):
    benchmarks: list[str] = Field(default_factory=lambda: ["competition"], min_length=1)
    prompt_format: PromptFormatName = "competition"
    prefix: str = ""
    suffix: str = ""
    system: str = ""
    eos: list[str] = Field(default_factory=list, description="extra end-of-sequence strings, e.g. <|im_end|>")
    max_length: int = Field(2048, ge=16, description="prompt + generation tokens, as the reference harness counts")
    max_new_tokens: Optional[int] = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    n_samples: int = Field(1, ge=1)
    greedy: bool = True
    temperature: float = Field(0.2, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    shards: Union[Literal["auto", "benchmark"], dict[str, int]] = Field(
        "auto", description="auto: elements of near-equal estimated cost; benchmark: one element per "
        "(model, benchmark); {benchmark: n}: that benchmark in n equal parts, the others whole"
    )
    balance: GenerationCost = Field(default_factory=GenerationCost)
    backend: Literal["hf", "vllm"] = "hf"
    static_cache: bool = Field(False, description="static KV cache (GPU decode speed)")
    compile: bool = Field(False, description="torch.compile the decode step; implies static_cache")
    model_path: Optional[str] = Field(None, description="override: generate with this model instead")
    placement: Literal["data_parallel", "split"] = Field(
        "data_parallel",
        description="how an element uses its devices: data_parallel = one rank per GPU (per node on CPU), "
                    "each generating a share of the rows; split = one rank per node, the model placed "
                    "across the node's gpus_per_node GPUs (HF device_map, vLLM tensor_parallel_size)")
    resources: Resources = Field(default_factory=lambda: Resources(gpus_per_node=1))

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        expanded = contract.expand_benchmarks(value)
        unknown = [b for b in expanded if b not in contract.ALL_BENCHMARKS]
        if unknown:
            raise ValueError(
                f"unknown benchmark(s) {unknown}; known: {', '.join(contract.ALL_BENCHMARKS)} "
                f"or the aliases {', '.join(contract.BENCHMARK_ALIASES)}"
            )
        return expanded

    @model_validator(mode="after")
    def _cross_fields(self) -> "GenerateStage":
        if self.greedy and self.n_samples > 1:
            raise ValueError("greedy decoding gives identical samples: set greedy: false for n_samples > 1")
        for name, count in (self.shards.items() if isinstance(self.shards, dict) else ()):
            if name not in self.benchmarks:
                raise ValueError(f"shards names benchmark '{name}', which is not in benchmarks")
            if count < 1:
                raise ValueError(f"shards.{name} must be >= 1")
        if self.placement == "split" and self.resources.gpus_per_node < 2:
            raise ValueError(f"placement: split places the model across GPUs, but resources.gpus_per_node is "
                             f"{self.resources.gpus_per_node}; set gpus_per_node >= 2 or use placement: "
                             "data_parallel (a CPU node is one device)")
        if self.prompt_format != "custom" and (self.prefix or self.suffix or self.system):
            raise ValueError("prefix/suffix/system are used with prompt_format: custom only")
        return self


class EvaluateStage(StrictModel):
    sandbox: Literal["auto", "bubblewrap", "apptainer", "none"] = "auto"
    balance: BalanceSpec = Field(default_factory=BalanceSpec, description="array size with generate.shards: auto")
    apptainer_image: Optional[str] = None
    workers: Optional[int] = Field(None, ge=1, description="None: the CPUs of the allocation")
    timeout_s: Optional[float] = Field(None, gt=0, description="per program, every benchmark; None: the reference harness's per-benchmark timeout (raising it marks the run not comparable)")
    resources: Resources = Field(default_factory=lambda: Resources(cpus_per_task=4))

    @model_validator(mode="after")
    def _image(self) -> "EvaluateStage":
        if self.sandbox == "apptainer" and not self.apptainer_image:
            raise ValueError("sandbox: apptainer needs apptainer_image (the .sif built from eval_sandbox/Apptainer.def)")
        return self


class CollectStage(StrictModel):
    resources: Resources = Field(default_factory=lambda: Resources(cpus_per_task=1, time="00:20:00"))


class Stages(StrictModel):
    train: Optional[TrainStage] = None
    merge: Optional[MergeStage] = None
    generate: Optional[GenerateStage] = None
    evaluate: Optional[EvaluateStage] = None
    collect: Optional[CollectStage] = None

    def present(self) -> list[str]:
        return [name for name in contract.STAGES if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _chain(self) -> "Stages":
        present = self.present()
        if not present:
            raise ValueError("stages: at least one of train, merge, generate, evaluate, collect is needed")
        s = self
        if s.merge and not s.train:
            raise ValueError("stages.merge needs stages.train (merge combines the trained adapter with the base)")
        if s.train and s.generate and not s.merge:
            raise ValueError("stages.generate after training needs stages.merge (generation loads a plain HF model)")
        if s.evaluate and not s.generate:
            raise ValueError("stages.evaluate needs stages.generate (it scores the generations)")
        if s.collect and not s.evaluate:
            raise ValueError("stages.collect needs stages.evaluate")
        return self


class Recipe(StrictModel):
    name: str
    model: Optional[ModelSpec] = Field(None, description="the model (the base, with a train stage)")
    models: Optional[list[SweepModel]] = Field(None, description="an eval-only sweep: several models")
    profile: Optional[str] = Field(None, description="default cluster profile for this recipe")
    output_root: str = "./runs"
    data_dir: Optional[str] = Field(None, description="benchmark data; default $MFTLAUNCH_DATA_DIR")
    limit: Optional[int] = Field(None, ge=1, description="first N problems per benchmark (demos, tests)")
    env: dict[str, str] = Field(default_factory=dict)
    stages: Stages

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("name may hold letters, digits, '_', '.', '-' only (it becomes part of Slurm job names)")
        return value

    @model_validator(mode="after")
    def _models(self) -> "Recipe":
        if self.models is not None and not self.models:
            raise ValueError("models: the list is empty; give at least one {name, path}")
        if self.model is None and not self.models:
            raise ValueError("a recipe needs `model:` (one model) or `models:` (an eval-only sweep of several)")
        if self.models is not None:
            if self.stages.train:
                raise ValueError("models: is for eval-only sweeps; with a train stage sweep checkpoints with "
                                 "stages.merge.checkpoints instead")
            if self.stages.generate and self.stages.generate.model_path:
                raise ValueError("stages.generate.model_path and models: both name the model; keep models:")
            names = [m.name for m in self.models]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"models: names must be unique, repeated: {', '.join(dupes)}")
        if self.stages.merge and self.stages.merge.is_sweep and self.stages.train:
            checkpoint_steps(self)  # raises with the fix when the steps cannot be known now
        return self

    @model_validator(mode="after")
    def _quantization_with_model_dtype(self) -> "Recipe":
        """The quantisation rules again, now that the compute dtype of mixed_precision: no is known."""
        train = self.stages.train
        broken = quant_rules.violations(train, self.model.dtype) if train else []
        if broken:
            raise ValueError("stages.train: " + "\n  ".join(broken))
        return self

    @property
    def benchmarks(self) -> list[str]:
        return list(self.stages.generate.benchmarks) if self.stages.generate else []

    @property
    def base_model(self) -> ModelSpec:
        """The recipe's `model:`, or the first sweep model's spec."""
        return self.model if self.model is not None else self.models[0].spec(None)  # type: ignore[index]


def checkpoint_steps(recipe: Recipe) -> list[CheckpointSelector]:
    """The checkpoints a sweep evaluates, resolved from the training schedule so the plan can hold
    one merge element per checkpoint before training runs: steps ascending, then best, then last.

    Periodic saves happen at every multiple of checkpointing_steps and at the final step, so
    `all` and `{every: k}` need train.max_steps (with epochs the final step depends on the data)."""
    train, merge = recipe.stages.train, recipe.stages.merge
    assert train is not None and merge is not None and merge.checkpoints is not None
    every, total = train.checkpointing_steps, train.max_steps
    chosen = merge.checkpoints
    if chosen in ("best", "last"):
        return [chosen]
    if chosen == "all" or isinstance(chosen, EveryKth):
        what = "checkpoints: all" if chosen == "all" else f"checkpoints: {{every: {chosen.every}}}"
        if total is None:
            raise ValueError(f"{what} needs train.max_steps (with epochs the number of checkpoints is known "
                             "only after training); set max_steps or list the steps, e.g. checkpoints: [100, 200]")
        stride = every * (1 if chosen == "all" else chosen.every)
        steps = list(range(stride, total + 1, stride))
        if chosen == "all" and (not steps or steps[-1] != total):
            steps.append(total)
        if not steps:
            raise ValueError(f"{what}: no checkpoint is saved every {stride} steps before max_steps {total}")
        return steps
    steps = sorted(s for s in chosen if isinstance(s, int))
    named = [s for s in ("best", "last") if s in chosen]
    for step in steps:
        if total is not None and step > total:
            raise ValueError(f"checkpoints: step {step} is after train.max_steps ({total})")
        if step % every and step != total:
            raise ValueError(f"checkpoints: step {step} is never saved: checkpoints are saved every "
                             f"train.checkpointing_steps ({every}) steps and at the last step; pick multiples of {every}")
    return [*steps, *named]


# --------------------------------------------------------------------------------------------
# loading


def _set_path(data: dict, dotted: str, value: Any, where: str) -> None:
    keys = dotted.split(".")
    if keys[0] in ("train", "merge", "generate", "evaluate", "collect"):
        keys = ["stages"] + keys
    node = data
    for key in keys[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise ConfigError([f"{where}: --set {dotted}: '{key}' is not a mapping"])
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` overrides (value parsed as YAML: 1e-4, true, [a, b] all work)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError([f"--set {item!r}: expected KEY=VALUE, e.g. --set train.learning_rate=1e-4"])
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set_path(data, key.strip(), value, "--set")
    return data


def _anchor(path: Optional[str], base: Path) -> Optional[str]:
    if not path or path.startswith("builtin:") or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def anchor_paths(recipe: Recipe, base: Path) -> Recipe:
    """Relative data and model paths are relative to the recipe file, so a recipe works from any
    working directory and the resolved copy in the run directory holds absolute paths."""
    if recipe.model is not None:
        recipe.model.path = _anchor(recipe.model.path, base)
        recipe.model.tokenizer_path = _anchor(recipe.model.tokenizer_path, base)
    for entry in recipe.models or []:
        entry.path = _anchor(entry.path, base)
        entry.tokenizer_path = _anchor(entry.tokenizer_path, base)
    recipe.data_dir = _anchor(recipe.data_dir, base)
    if recipe.stages.train:
        for ds in recipe.stages.train.datasets:
            ds.path = _anchor(ds.path, base)
    if recipe.stages.generate:
        recipe.stages.generate.model_path = _anchor(recipe.stages.generate.model_path, base)
    if recipe.stages.evaluate:
        recipe.stages.evaluate.apptainer_image = _anchor(recipe.stages.evaluate.apptainer_image, base)
    return recipe


def recipe_from_source(source: YamlSource, overrides: list[str] = ()) -> Recipe:
    if not isinstance(source.data, dict):
        raise ConfigError([f"{source.path}: a recipe is a YAML mapping (name, model, stages, ...)"])
    data = dict(source.data)
    data.setdefault("name", source.path.stem)
    apply_overrides(data, list(overrides))
    recipe = validate_model(Recipe, data, source)
    return anchor_paths(recipe, source.path.resolve().parent)  # type: ignore[arg-type]


def load_recipe(path: Union[str, Path], overrides: list[str] = ()) -> Recipe:
    return recipe_from_source(load_yaml(Path(path)), overrides)


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
