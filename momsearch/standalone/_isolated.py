"""Run exported modules in an interpreter where momsearch cannot be imported (executed as a script).

Started as ``python -I _isolated.py JOBS.json``. Each job names an export directory, a file of inputs, an
output file and a dtype: the script imports ``cell.py`` from the directory, loads ``weights.pt`` with
``weights_only=True`` into ``Model()`` with ``strict=True``, runs the inputs and saves the output. It
prints one JSON object: whether ``import momsearch`` failed as it should, and each job's error (or None).
"""

import importlib.abc
import importlib.util
import json
import sys


class _RefuseMomsearch(importlib.abc.MetaPathFinder):
    """Makes ``import momsearch`` fail even where it is installed (editable installs ignore ``-I``)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "momsearch" or fullname.startswith("momsearch."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (refused in the isolated check)")
        return None


def _run(index, job):
    import torch

    spec = importlib.util.spec_from_file_location(f"exported_cell_{index}", f"{job['dir']}/cell.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    model = module.Model()
    if job["dtype"] == "float64":
        model = model.double()
    model.load_state_dict(torch.load(f"{job['dir']}/weights.pt", weights_only=True), strict=True)
    model.eval()
    inputs = torch.load(job["inputs"], weights_only=True)
    with torch.no_grad():
        output = model(*inputs)
    torch.save(output, job["output"])


def main(path):
    sys.meta_path.insert(0, _RefuseMomsearch())
    try:
        import momsearch  # noqa: F401

        refused = False
    except ImportError:
        refused = True
    import torch

    torch.set_num_threads(1)
    with open(path) as f:
        jobs = json.load(f)
    errors = []
    for index, job in enumerate(jobs):
        try:
            _run(index, job)
            errors.append(None)
        except Exception as exc:  # report every job's failure, keep checking the others
            errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
    print(json.dumps({"momsearch_refused": refused, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1])
