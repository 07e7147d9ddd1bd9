"""The guest agent: reports the VM's listeners, serves streams to them, mirrors the host's."""
