"""The model library: a SQLite catalog of a whole model folder, its report (totals, problems,
duplicates), the savings plan and the batch conversion that applies it."""
