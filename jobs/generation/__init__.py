"""The generate stage's parts; `jobs.generate` is the stage entry that puts them together.

- `settings`: how to decode (`DecodeSettings`) and how many tokens a row may generate.
- `rows`: the unit of work (`Row`, `RowResult`) and the order rows are batched in.
- `text`: detokenizing new tokens the way the reference harness slices its output.
- `hf_engine`: batched generation with transformers' `generate` (the default backend).
- `vllm_engine`: the optional vLLM backend.
- `model_loading`: which model and tokenizer a recipe means, and which engine loads them.
- `progress`: the partial-progress file that lets a requeued element skip finished rows.
- `benchmark`: one benchmark (or shard) from problems to the generations file and its sidecar.
"""
