"""The documents of the training and held-out sets, read from ../shared/corpora.

One definition for tools/train/train.py (which trains and evaluates on them) and
tools/extrapolation/extrapolation.py (which evaluates through the server), so both see the same texts.
Standard library only: the extrapolation tool runs without PyTorch.
"""
from pathlib import Path

# ../shared beside the repository (tools/train/corpora.py -> repository -> its parent).
CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
FILES = ("kjv-bible.txt", "sotu-1790-2021.txt", "moby-dick.txt")

# The SOTU file has no dates: one address per non-empty line, in chronological order, ending with 2021.
# The first address of 2000 (Clinton) is found by its opening words; 2000-2021 is one address a year, 22 in all.
SOTU_2000_OPENING = "We are fortunate to be alive at this moment in history."
SOTU_HELDOUT_ADDRESSES = 22


def read(name, corpora=CORPORA):
    return (Path(corpora) / name).read_text(encoding="utf-8")


def sotu_addresses(corpora=CORPORA):
    """The State of the Union addresses in file (chronological) order; checks where 2000 starts."""
    addresses = [line for line in read("sotu-1790-2021.txt", corpora).split("\n") if line.strip()]
    first_2000 = [i for i, a in enumerate(addresses) if SOTU_2000_OPENING in a[:200]]
    if first_2000 != [len(addresses) - SOTU_HELDOUT_ADDRESSES]:
        raise ValueError("unexpected SOTU layout: the 2000 address is not the 22nd from the end")
    return addresses


def documents(corpora=CORPORA):
    """{train, sotu_2000_2021, moby_dick}: each a list of documents, in stream order.

    The KJV Bible is one document, every State of the Union address is one, Moby-Dick is one. The training set is
    the Bible then the 1790-1999 addresses."""
    addresses = sotu_addresses(corpora)
    split = len(addresses) - SOTU_HELDOUT_ADDRESSES
    return {
        "train": [read("kjv-bible.txt", corpora)] + addresses[:split],
        "sotu_2000_2021": addresses[split:],
        "moby_dick": [read("moby-dick.txt", corpora)],
    }
