# ---------- transcribe ---------- (rules are added by the transcribe stage)
