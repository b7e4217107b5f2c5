"""What the evaluate and collect stages read and write, apart from running programs: generations
files, pass@k scoring, the per-task collection of metrics, its tables, and the submission zip."""
