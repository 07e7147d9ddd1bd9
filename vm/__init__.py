"""The VM side and the way there: guest agent, transports, VM backends."""
