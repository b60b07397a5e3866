# ---------- dataset ---------- (rules are added by the dataset stage)
