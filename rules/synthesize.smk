# ---------- synthesize ---------- (rules are added by the synthesize stage)
