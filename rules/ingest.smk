# ---------- ingest ---------- (rules are added by the ingest stage)
