"""Pure text: prompts (data, versioned), reply parsing, answer matching, script detection and token estimates.
No I/O, no network, nothing of the other layers."""
