"""Keys and COSE_Sign1 envelopes shared by consent lists, events and receipts."""
