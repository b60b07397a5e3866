# ---------- segment ---------- (rules are added by the segment stage)
