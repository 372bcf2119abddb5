"""Developer commands (render, local mode, monitor, plan diff); nothing in components/ imports these."""
