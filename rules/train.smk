# ---------- train ---------- (rules are added by the train stage)
