"""Learning events: producing them to the stream, and (later) consuming them."""
