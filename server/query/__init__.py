"""Query features over the index: payload filters and hybrid fusion."""
