"""The data and loss half of multi-task fine-tuning (MFTCoder-style).

templates: chat templates and which tokens carry the loss.
data:      chat_rounds JSONL task directories → tokenized, cached, split datasets.
batching:  padding / dynamic / pack collators and deterministic per-rank epoch plans.
losses:    case1..case4 multi-task losses and the CoBa task-weight balancer.

`data` and `templates` import no torch, so the launcher side can check data without it.
"""
