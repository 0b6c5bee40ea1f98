"""Globals known to run code, touch files or the network, or load nested pickles.

The verdict is allow-list based (:data:`sdmodel.formats.pickle_allow.ALLOWED`): anything else
is at least suspicious. This list only *grades* an unknown global as dangerous even when it is not
called. Facts merged from picklescan (``_unsafe_globals``), modelscan (``unsafe_globals``) and
fickling (``UNSAFE_IMPORTS``, ``UnsafeImportsML``), plus private aliases and the scanners
themselves. Modules match by prefix: a denied module denies all its submodules
(``asyncio.unix_events`` falls under ``asyncio``, CVE-2025-10157).
"""

from __future__ import annotations

from sdmodel.i18n import Msg

# Whole modules (and every submodule).
DENIED_MODULES: frozenset[str] = frozenset(
    {
        # process execution, OS access
        "os",
        "posix",
        "nt",
        "subprocess",
        "_posixsubprocess",
        "_winapi",
        "pty",
        "commands",
        "popen2",
        "sys",
        "multiprocessing",
        "_multiprocessing",
        "signal",
        "_signal",
        "threading",
        "_thread",
        "atexit",
        "platform",
        "_osx_support",
        "_aix_support",
        "_pyrepl",
        "uuid",
        "resource",
        "fcntl",
        "posixpath",
        "ntpath",
        # code execution, compilation, import machinery
        "code",
        "codeop",
        "runpy",
        "marshal",
        "types",
        "importlib",
        "_frozen_importlib",
        "_frozen_importlib_external",
        "_imp",
        "imp",
        "pkgutil",
        "zipimport",
        "gc",
        "site",
        "inspect",
        "ctypes",
        "_ctypes",
        "cffi",
        "compileall",
        "py_compile",
        "ast",
        "dis",
        # debuggers, profilers, test harnesses that exec strings
        "pdb",
        "bdb",
        "cProfile",
        "profile",
        "_lsprof",
        "timeit",
        "trace",
        "doctest",
        "unittest",
        "test",
        "idlelib",
        "lib2to3",
        "pydoc",
        "pydoc_data",
        # nested deserialisers
        "pickle",
        "_pickle",
        "cPickle",
        "pickletools",
        "copyreg",
        "copy_reg",
        "shelve",
        "dill",
        "cloudpickle",
        "joblib",
        "jsonpickle",
        "yaml",
        "_yaml",
        "ruamel",
        # network
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "http",
        "httplib",
        "urllib",
        "urllib2",
        "urllib3",
        "requests",
        "aiohttp",
        "asyncio",
        "_asyncio",
        "httpx",
        "webbrowser",
        "smtplib",
        "imaplib",
        "ftplib",
        "poplib",
        "telnetlib",
        "nntplib",
        "socketserver",
        "SocketServer",
        "xmlrpc",
        "xmlrpclib",
        "select",
        "selectors",
        "mmap",
        # files
        "shutil",
        "tempfile",
        "filecmp",
        "fileinput",
        "glob",
        "linecache",
        "tarfile",
        "zipfile",
        "sqlite3",
        "_sqlite3",
        "logging",
        "syslog",
        "io",
        "_io",
        "pathlib",
        "difflib",
        # packaging, environments
        "pip",
        "ensurepip",
        "venv",
        "virtualenv",
        "distutils",
        "setuptools",
        "pkg_resources",
        # functional helpers that turn data into calls (getattr equivalents, partial application)
        "operator",
        "_operator",
        "functools",
        "_functools",
        # ML libraries' loaders and code paths
        "torch.hub",
        "torch.jit",
        "torch._dynamo",
        "torch._inductor",
        "torch.compile",
        "torch.package",
        "torch.utils.bottleneck",
        "torch.utils.collect_env",
        "torch.utils.cpp_extension",
        "torch.utils._config_module",
        "torch.distributed",
        "torch.multiprocessing",
        "torch.fx",
        "torch.testing",
        "torch.backends",
        "numpy.f2py",
        "numpy.distutils",
        "numpy.testing",
        "numpy.ctypeslib",
        "numpy.lib.npyio",
        "pandas.io",
        "mlflow",
        "keras",
        "tensorflow",
        "transformers.models.auto",
        "huggingface_hub",
        # scanners an attacker would like to switch off (deactivation gadgets)
        "picklescan",
        "fickling",
        "modelscan",
    }
)

# Specific names in modules that are otherwise harmless or partly allow-listed.
DENIED_NAMES: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "eval",
            "exec",
            "execfile",
            "compile",
            "getattr",
            "setattr",
            "delattr",
            "hasattr",
            "apply",
            "open",
            "file",
            "breakpoint",
            "__import__",
            "globals",
            "locals",
            "vars",
            "input",
            "raw_input",
            "reload",
            "memoryview",
            "exit",
            "quit",
            "type",
            "object",
            "super",
            "classmethod",
            "staticmethod",
            "property",
            "__build_class__",
            "__loader__",
            "__spec__",
        }
    ),
    "torch": frozenset({"load", "compile", "jit", "hub", "_C", "ops", "classes", "package", "from_file"}),
    "torch.serialization": frozenset({"load", "_load", "_legacy_load", "_get_restore_location", "_open_file"}),
    "torch.storage": frozenset({"_load_from_bytes"}),
    "torch._utils": frozenset({"_rebuild_tensor_from_storage_with_hooks"}),
    "torch.utils.data.datapipes.utils.decoder": frozenset({"basichandlers", "Decoder"}),
    "torch.jit.unsupported_tensor_ops": frozenset({"execWrapper"}),
    "numpy": frozenset(
        {"load", "loads", "fromfile", "save", "savez", "loadtxt", "genfromtxt", "memmap", "tofile", "DataSource"}
    ),
    "numpy.lib": frozenset({"npyio", "format"}),
    "numpy.lib.format": frozenset({"read_array", "open_memmap"}),
    "pandas": frozenset({"read_pickle", "read_csv", "eval", "read_sql"}),
    "collections": frozenset({"_itemgetter", "_attrgetter"}),
}

# Module aliases CPython maps at protocol < 3 (``_compat_pickle``), spelled the py2 way.
PY2_ALIASES: dict[str, str] = {"__builtin__": "builtins", "__builtins__": "builtins", "exceptions": "builtins"}


def module_denied(module: str) -> str | None:
    """The denied module (or parent package) that ``module`` falls under, if any."""
    parts = module.split(".")
    for n in range(1, len(parts) + 1):
        prefix = ".".join(parts[:n])
        if prefix in DENIED_MODULES:
            return prefix
    return None


def denied(module: str, name: str) -> Msg | None:
    """Why ``module.name`` is known to be dangerous, or None when it is merely unknown."""
    module = PY2_ALIASES.get(module, module)
    hit = module_denied(module)
    if hit is not None:
        if hit == module:
            return Msg("module {module} runs code or touches the system", module=hit)
        return Msg("submodule of {module}", module=hit)
    head = name.split(".", 1)[0]
    for mod in (module, PY2_ALIASES.get(module, module)):
        names = DENIED_NAMES.get(mod)
        if names and (name in names or head in names):
            return Msg("{module}.{name} is a known code-execution, file or nested-loader gadget", module=mod, name=head)
    if "." in name and module in ("builtins", "__builtin__"):
        return Msg("{name!r} walks attributes of a builtin (dict.get on __builtins__ reaches eval)", name=name)
    # dotted names that walk into a denied module, and dunder attributes
    for part in name.split("."):
        if module_denied(part) or part.startswith("__"):
            return Msg("name {name!r} reaches {part}", name=name, part=part)
    return None
