"""The local AWS stack: moto in its own process, the change emitter, provisioning, the control API."""
