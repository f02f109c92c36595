"""What every layer shares and no layer owns: the error every refusal is, the vocabulary of
a trial (its states, the roles of its config's fields) and file I/O that must never leave
half a file. It imports nothing of ours, so any layer may import it (model/ excepted: the
model stands alone)."""
