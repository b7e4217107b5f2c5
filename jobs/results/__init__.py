"""Reading back what the evaluate stage wrote: pass@k scoring, the per-task collection, its
tables, and the competition submission zip. Used by the evaluate and collect stages and the CLI."""
