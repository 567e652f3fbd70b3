"""``sbdeploy pipeline``: export -> passes -> engine -> validate -> bench in one run folder (:mod:`.run`), its summary (:mod:`.summary`)."""
