#!/usr/bin/env python3
"""dtr-sim: the `docker` and `curl` commands of a DTR 2.5-2.7 node, rebuilt from public
documentation. tests/sim/README.md cites a source for every behaviour, by the keys of
/work/shared/reference/dtr-interface.md ([D-ps], [L-msr], ...).

State is one JSON file, $DTR_SIM_DIR/state.json, locked with flock; this node is
$NODE_NAME (the hostname `docker info` prints). Anything not modelled fails loudly with
"dtr-sim: not modelled: ..." and exit 97.
"""

import fcntl
import json
import os
import re
import shlex
import sys
import time
import uuid
from urllib.parse import parse_qs, urlsplit

NOT_MODELLED = 97
SERVICES = [  # [D-arch], [S-ws]: container service -> image name
    ("api", "dtr-api"),
    ("garant", "dtr-garant"),
    ("jobrunner", "dtr-jobrunner"),
    ("nginx", "dtr-nginx"),
    ("notary-server", "dtr-notary-server"),
    ("notary-signer", "dtr-notary-signer"),
    ("registry", "dtr-registry"),
    ("rethinkdb", "dtr-rethink"),
    ("scanningstore", "dtr-postgres"),
]
JOB_STATUSES = ["waiting", "running", "done", "error", "cancel_request", "cancel",
                "deleted", "worker_dead", "worker_shutdown", "worker_resurrection"]  # [D-jobq]

# Bootstrapper flags per command and minor version [D-up25] [D-up26] [D-up27] [D-join25]
# [D-join27] [M-join] [D-rm24] [D-rm26] [D-rm27] [D-img27]; each flag's environment
# variable [D-join27] [D-rm27].
COMMON = {"debug": "DEBUG", "existing-replica-id": "DTR_REPLICA_ID",
          "help-extended": "DTR_EXTENDED_HELP", "ucp-ca": "UCP_CA",
          "ucp-insecure-tls": "UCP_INSECURE_TLS", "ucp-password": "UCP_PASSWORD",
          "ucp-url": "UCP_URL", "ucp-username": "UCP_USERNAME"}
JOIN = dict(COMMON, **{"replica-http-port": "REPLICA_HTTP_PORT",
                       "replica-https-port": "REPLICA_HTTPS_PORT",
                       "replica-id": "DTR_INSTALL_REPLICA_ID",
                       "replica-rethinkdb-cache-mb": "RETHINKDB_CACHE_MB",
                       "skip-network-test": "DTR_SKIP_NETWORK_TEST",
                       "ucp-node": "UCP_NODE", "unsafe-join": "DTR_UNSAFE_JOIN"})
REMOVE = dict(COMMON, **{"replica-ids": "DTR_REMOVE_REPLICA_IDS",
                         "replica-id": "DTR_REMOVE_REPLICA_ID"})
FLAGS = {
    "2.5": {"upgrade": COMMON, "join": JOIN, "remove": REMOVE, "images": {}},
    "2.6": {"upgrade": dict(COMMON, **{"no-image-check": "NO_IMAGE_CHECK"}), "join": JOIN,
            "remove": REMOVE, "images": {}},
    "2.7": {"upgrade": COMMON, "join": JOIN, "remove": REMOVE, "images": {}},
}
BOOLEAN_FLAGS = {"debug", "help-extended", "ucp-insecure-tls", "unsafe-join",
                 "skip-network-test", "no-image-check"}


class Exit(Exception):
    def __init__(self, code, err="", out=""):
        super().__init__(code)
        self.code, self.err, self.out = code, err, out


def loud(what):
    raise Exit(NOT_MODELLED, f"dtr-sim: not modelled: {what} (see tests/sim/README.md)\n")


SIM = os.environ.get("DTR_SIM_DIR") or ""
NODE = os.environ.get("NODE_NAME") or os.uname().nodename


def knob(name):
    """The text of knob file `name`, or None."""
    try:
        with open(os.path.join(SIM, name), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


class State:
    def __init__(self):
        if not SIM:
            raise Exit(2, "dtr-sim: set DTR_SIM_DIR\n")
        os.makedirs(SIM, exist_ok=True)
        self.lock = open(os.path.join(SIM, "state.lock"), "a+", encoding="utf-8")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            with open(os.path.join(SIM, "state.json"), encoding="utf-8") as f:
                self.s = json.load(f)
        except OSError:
            self.s = None

    def save(self):
        tmp = os.path.join(SIM, f".state.{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.s, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(SIM, "state.json"))

    def unlock(self):
        fcntl.flock(self.lock, fcntl.LOCK_UN)

    def need(self):
        if self.s is None:
            raise Exit(1, "dtr-sim: no cluster: run `docker dtr-sim init` first\n")
        return self.s


def vkey(v):
    return tuple(int(x) for x in v.split("."))


def cluster_version(s):
    vs = [r["version"] for r in s["replicas"].values()]
    return min(vs, key=vkey) if vs else None


def minor(v):
    return ".".join(v.split(".")[:2])


# ---------------------------------------------------------------- docker: containers

def containers(s, node=None):
    """Docker's view of DTR's containers on `node`, in `docker inspect`'s shape."""
    out = []
    for rid in sorted(s["replicas"]):
        r = s["replicas"][rid]
        if node is not None and r["node"] != node:
            continue
        for svc, img in SERVICES:
            name = f"dtr-{svc}-{rid}"
            labels = {}
            if r.get("labels", True):  # [L-msr] (unverified on 2.5/2.6: knob per replica)
                labels = {"com.docker.dtr.version": r["version"], "com.docker.dtr.replica": rid}
            env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            if svc == "registry":
                env.append(f"DTR_VERSION={r['version']}")  # [D-bk26]
            running = r["running"]
            health = None
            if svc == "nginx":  # [S-ws]: only dtr-nginx has a healthcheck
                health = ("healthy" if r["healthy"] else "unhealthy") if running else None
            out.append({
                "Id": (rid + svc.replace("-", "") * 8)[:64].ljust(64, "0"),
                "Name": "/" + name,
                "Image": f"docker/{img}:{r['version']}",
                "State": {"Status": "running" if running else "exited", "Running": running,
                          **({"Health": {"Status": health}} if health else {})},
                "Config": {"Image": f"docker/{img}:{r['version']}", "Labels": labels, "Env": env},
            })
    return out


def ps_status(c):
    st = c["State"]
    if not st["Running"]:
        return "Exited (137) 5 minutes ago"
    h = st.get("Health", {}).get("Status")
    return "Up 41 hours" + (f" ({h})" if h else "")


def ps_field(c, name, arg):
    short = c["Id"][:12]
    fields = {
        "ID": short, "Image": c["Config"]["Image"], "Names": c["Name"][1:],
        "State": c["State"]["Status"], "Status": ps_status(c),
        "Command": '"/bin/' + c["Name"].split("-")[1] + '"', "Ports": "", "Mounts": "",
        "Networks": "dtr-ol", "Size": "0B", "RunningFor": "41 hours ago",
        "CreatedAt": "2026-11-26 10:00:00 +0000 UTC",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c["Config"]["Labels"].items())),
    }
    if name == "Label":
        return c["Config"]["Labels"].get(arg, "")
    if name not in fields:
        raise Exit(1, f'template: :1: executing "" at <.{name}>: can\'t evaluate field {name} '
                      "in type *formatter.ContainerContext\n")
    return fields[name]


ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def go_template(fmt, resolve):
    """A Go text/template subset: {{.Field}}, {{.Label "k"}}, {{index .A.B "k"}},
    {{json .A}}; anything else is not modelled."""
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")  # docker's formatter does this
    out, pos = [], 0
    for m in ACTION.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        words = shlex.split(m.group(1))
        if len(words) == 1 and words[0].startswith("."):
            out.append(str(resolve(words[0][1:], None, "plain")))
        elif len(words) == 2 and words[0].startswith(".") and words[0] == ".Label":
            out.append(str(resolve("Label", words[1], "plain")))
        elif len(words) == 3 and words[0] == "index" and words[1].startswith("."):
            v = resolve(words[1][1:], None, "raw")
            out.append(str(v.get(words[2], "<no value>") if isinstance(v, dict) else ""))
        elif len(words) == 2 and words[0] == "json" and words[1].startswith("."):
            out.append(json.dumps(resolve(words[1][1:], None, "raw"), separators=(",", ":")))
        else:
            loud(f"template action {{{{{m.group(1)}}}}}")
    out.append(fmt[pos:])
    return "".join(out)


def walk(obj, path):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise Exit(1, f'template: :1: executing "" at <.{path}>: map has no entry for key '
                          f'"{part}"\n')
        obj = obj[part]
    return obj


def name_filter(pattern, c):
    try:
        return re.search(pattern, c["Name"]) is not None  # [D-ps]: matched with leading "/"
    except re.error:
        raise Exit(1, f"Error response from daemon: Invalid filter 'name={pattern}'\n")


def docker_ps(s, args):
    show_all = quiet = False
    fmt = None
    filters = []
    it = iter(args)
    for a in it:
        if a in ("-a", "--all"):
            show_all = True
        elif a in ("-q", "--quiet"):
            quiet = True
        elif a in ("-aq", "-qa"):
            show_all = quiet = True
        elif a in ("-f", "--filter"):
            filters.append(next(it, ""))
        elif a.startswith("--filter="):
            filters.append(a.split("=", 1)[1])
        elif a == "--format":
            fmt = next(it, "")
        elif a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a == "--no-trunc":
            pass
        else:
            raise Exit(125, f"unknown flag: {a}\nSee 'docker ps --help'.\n")
    rows = []
    for c in containers(s, NODE):
        if not show_all and not c["State"]["Running"]:
            continue  # [D-ps]: without -a only running containers
        ok = True
        for f in filters:
            key, _, val = f.partition("=")
            if key == "name":
                ok = ok and name_filter(val, c)
            elif key == "label":
                k, eq, v = val.partition("=")
                labels = c["Config"]["Labels"]
                ok = ok and k in labels and (not eq or labels[k] == v)
            elif key == "status":
                ok = ok and c["State"]["Status"] == val
            elif key == "health":
                ok = ok and c["State"].get("Health", {}).get("Status", "none") == val
            else:
                loud(f"docker ps filter `{key}`")
        if ok:
            rows.append(c)
    lines = []
    if quiet:
        lines = [c["Id"][:12] for c in rows]
    elif fmt is None or fmt.startswith("table"):
        loud("docker ps without --format (the table layout)")
    else:
        for c in rows:
            lines.append(go_template(fmt, lambda n, a, mode, c=c: ps_field(c, n, a)))
    return "".join(line + "\n" for line in lines)


def docker_inspect(s, args):
    fmt = None
    names = []
    it = iter(args)
    for a in it:
        if a in ("-f", "--format"):
            fmt = next(it, "")
        elif a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-"):
            raise Exit(125, f"unknown flag: {a}\n")
        else:
            names.append(a)
    every = containers(s)
    found, missing = [], []
    for n in names:
        c = next((c for c in every if c["Name"] == "/" + n or c["Id"].startswith(n)), None)
        # docker on a node sees only that node's containers
        if c is None or s["replicas"][c["Name"].rsplit("-", 1)[1]]["node"] != NODE:
            missing.append(n)
        else:
            found.append(c)
    if fmt is None:
        out = json.dumps(found, indent=4) + "\n"
    else:
        out = "".join(go_template(fmt, lambda n, a, mode, c=c: walk(c, n)) + "\n" for c in found)
    if missing:
        raise Exit(1, "".join(f"Error: No such object: {n}\n" for n in missing), out)
    return out


def docker_info(s, args):
    node = s["nodes"].get(NODE)
    if node is None:
        loud(f"node `{NODE}` (not in `dtr-sim init --nodes`)")
    if len(args) != 2 or args[0] not in ("-f", "--format"):
        loud("docker info without --format")
    info = {"Name": NODE, "MemTotal": node["mem_bytes"], "ServerVersion": "19.03.14"}
    return go_template(args[1], lambda n, a, mode: walk(info, n)) + "\n"


def image_present(s, image):
    return image in s["nodes"].get(NODE, {}).get("images", [])


def add_image(s, image, node=NODE):
    imgs = s["nodes"].setdefault(node, {"mem_bytes": 34359738368, "images": []})["images"]
    if image not in imgs:
        imgs.append(image)


def dtr_images(version):
    """`docker run docker/dtr:<v> images` [D-img27] [L-img]."""
    return [f"docker/{img}:{version}" for _, img in SERVICES] + [f"docker/dtr:{version}"]


def docker_load(s, args):
    if len(args) != 2 or args[0] not in ("-i", "--input"):
        loud("docker load without -i FILE")
    try:
        with open(args[1], encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise Exit(1, f"open {args[1]}: {e.strerror.lower()}\n")
    if not text.startswith("dtr-sim image archive\n"):
        raise Exit(1, "Error processing tar file(exit status 1): unexpected EOF\n")
    out = ""
    for image in text.splitlines()[1:]:
        if image.strip():
            add_image(s, image.strip())
            out += f"Loaded image: {image.strip()}\n"  # [S-logs2] [D-offline]
    return out


def docker_pull(s, args):
    if len(args) != 1:
        loud("docker pull options")
    if knob("offline") is not None:
        raise Exit(1, f"Error response from daemon: Get https://registry-1.docker.io/v2/: dial "
                      "tcp: lookup registry-1.docker.io: no such host\n")
    add_image(s, args[0])
    return f"Status: Downloaded newer image for {args[0]}\n"


def docker_image(s, args):
    if len(args) < 2 or args[0] != "inspect":
        loud("docker image " + " ".join(args[:1]))
    rest = [a for a in args[1:] if not a.startswith("-")]
    fmt_given = any(a.startswith("-") for a in args[1:])
    if len(rest) != 1 or (fmt_given and args[1:3] not in (["--format", "{{.ID}}"], ["-f", "{{.ID}}"])):
        loud("docker image inspect with these arguments")
    if not image_present(s, rest[0]):
        raise Exit(1, f"Error: No such image: {rest[0]}\n", "[]\n" if not fmt_given else "")
    return "sha256:" + format(abs(hash(rest[0])), "x").ljust(64, "0")[:64] + "\n"


# ---------------------------------------------------------------- docker run: bootstrapper

def parse_run(args):
    env = {}
    tty = interactive = False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--rm":
            i += 1
        elif a in ("-i", "--interactive"):
            interactive = True
            i += 1
        elif a in ("-t", "--tty"):
            tty = True
            i += 1
        elif a in ("-it", "-ti"):
            tty = interactive = True
            i += 1
        elif a in ("-e", "--env") or a.startswith("--env="):
            val = a.split("=", 1)[1] if a.startswith("--env=") else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if a.startswith("--env=") else 2
            name, eq, v = val.partition("=")
            if eq:
                env[name] = v
            elif name in os.environ:
                env[name] = os.environ[name]
        elif a == "--env-file":
            path = args[i + 1] if i + 1 < len(args) else ""
            i += 2
            try:
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        line = line.rstrip("\n")
                        if not line.strip() or line.lstrip().startswith("#"):
                            continue
                        name, eq, v = line.partition("=")
                        if eq:
                            env[name] = v
                        elif name in os.environ:
                            env[name] = os.environ[name]
            except OSError:
                raise Exit(125, f"docker: open {path}: no such file or directory.\n")
        elif a.startswith("-"):
            raise Exit(125, f"unknown flag: {a}\nSee 'docker run --help'.\n")
        else:
            break
    if tty and interactive and not os.isatty(0):
        raise Exit(1, "the input device is not a TTY\n")  # [G-tty]
    if i >= len(args):
        raise Exit(125, '"docker run" requires at least 1 argument.\n')
    return env, args[i], args[i + 1:]


def parse_flags(version, command, argv, env):
    table = FLAGS.get(minor(version), {}).get(command)
    if table is None:
        if minor(version) not in FLAGS:
            loud(f"bootstrapper version {version}")
        loud(f"bootstrapper command `{command}`")
    got = {}
    # every flag may come from its environment variable [D-join27]
    for flag, var in table.items():
        if var in env:
            got[flag] = env[var] if flag not in BOOLEAN_FLAGS else env[var] not in ("", "false", "0")
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            raise Exit(1, f"Incorrect Usage: unexpected argument {a}\n")
        name, eq, val = a.lstrip("-").partition("=")
        if name not in table:
            # [G-cli]: urfave/cli over Go's flag package
            raise Exit(1, f"Incorrect Usage: flag provided but not defined: -{name}\n\n"
                          f"NAME:\n   docker/dtr {command}\n")
        if name in BOOLEAN_FLAGS:
            got[name] = (val or "true") != "false"
            i += 1
        else:
            if not eq:
                if i + 1 >= len(argv):
                    raise Exit(1, f"Incorrect Usage: flag needs an argument: -{name}\n")
                val = argv[i + 1]
                i += 1
            got[name] = val
            i += 1
    return got


def log(level, msg):
    """logrus' text format without a terminal, on stderr [S-logs2]."""
    return f'time="2026-11-28T10:00:00Z" level={level} msg="{msg}"\n'


def fatal(msg):
    return Exit(1, log("fatal", msg))


def ucp_connect(s, f):
    """What every bootstrapper command does first [S-logs2]: validate UCP's certificate,
    connect, log in."""
    for need in ("ucp-url", "ucp-username", "ucp-password"):
        if not f.get(need):
            # without a terminal the prompt reads EOF [D-idx26]
            raise fatal(f"{need} is required (interactive prompt: EOF)")
    if urlsplit(f["ucp-url"] if "//" in f["ucp-url"] else "https://" + f["ucp-url"]).hostname != s["ucp"]["host"]:
        raise fatal(f"Couldn't connect to UCP at {f['ucp-url']}: no such host")
    if not f.get("ucp-insecure-tls") and f.get("ucp-ca", "").strip() != s["ucp"]["ca"].strip():
        raise fatal("Failed to validate UCP cert: x509: certificate signed by unknown authority")
    if f["ucp-username"] != s["ucp"]["username"] or f["ucp-password"] != s["ucp"]["password"]:
        raise fatal("Failed to login to UCP: 401 Unauthorized")
    return (log("info", "Validating UCP cert") + log("info", "Connecting to UCP")
            + log("info", "UCP cert validation successful"))


def unhealthy(s, exclude=()):
    return sorted(rid for rid, r in s["replicas"].items()
                  if rid not in exclude and not (r["healthy"] and r["running"]))


def need_existing(s, f):
    rid = f.get("existing-replica-id")
    if not rid:
        raise fatal("existing-replica-id is required (interactive prompt: EOF)")
    r = s["replicas"].get(rid)
    if r is None:
        raise fatal(f"Replica {rid} not found in this DTR cluster")
    if not (r["healthy"] and r["running"]):
        raise fatal(f"Replica {rid} is not healthy")
    return rid


def judge(a, b):
    """The seed's table ("Upgrade DTR"): the row name and whether it is supported."""
    x, y, z = vkey(a)
    X, Y, Z = vkey(b)
    if X < x:
        return "major downgrade", False
    if X > x + 1:
        return "skip major version", False
    if X == x + 1:
        return ("major upgrade", True) if Y == 0 else ("major upgrade skipping minor version", False)
    if Y < y:
        return "minor downgrade", False
    if Y > y + 1:
        return "skip minor version", False
    if Y == y + 1:
        return "minor upgrade", True
    if Z < z:
        return "patch downgrade", False
    if Z > z + 1:
        return "skip patch version", True
    if Z == z + 1:
        return "patch upgrade", True
    return "same version", True


def count_knob(name):
    text = knob(name)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else 0


def new_job(s, action, retry_from=None, worker=""):
    """One job attempt [D-jobapi] [S-exp]; its status from the `fail.migration` knob."""
    jid = str(uuid.uuid4())
    failures = sum(1 for j in s["jobs"] if j["action"] == action and j["status"] == "error")
    status = "done"
    k = count_knob("fail.migration") if action == "metadatastoremigration" else None
    if knob("hold.migration") is not None and action == "metadatastoremigration":
        status = "running"
    elif k is not None and (k == 0 or failures < k):
        status = "error"
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    job = {"id": jid, "retryFromID": retry_from or jid, "workerID": worker,
           "status": status, "scheduledAt": now, "lastUpdated": now, "action": action,
           "retriesLeft": 0, "retriesTotal": 0, "capacityMap": None, "parameters": None,
           "deadline": "", "stopTimeout": ""}
    s["jobs"].insert(0, job)  # .jobs[0] is the most recent [S-logs]
    return job


def run_migration(s, worker):
    """After 2.5 -> 2.6: the job, retried twice by the system [D-upg]."""
    first = new_job(s, "metadatastoremigration", worker=worker)
    first["retriesTotal"] = 2
    first["retriesLeft"] = 2
    job = first
    for left in (1, 0):
        if job["status"] != "error":
            break
        job = new_job(s, "metadatastoremigration", retry_from=first["id"], worker=worker)
        job["retriesTotal"], job["retriesLeft"] = 2, left


def bootstrap_upgrade(s, version, f):
    out = ucp_connect(s, f)
    existing = need_existing(s, f)
    if knob("hang.upgrade") is not None:
        sys.stderr.write(out)
        sys.stderr.flush()
        STATE.unlock()
        time.sleep(10 ** 6)
    frm = cluster_version(s)
    if s.get("upgrade") and s["upgrade"]["target"] == version:
        frm = s["upgrade"]["from"]  # resume [D-upg]
    row, ok = judge(frm, version)
    if row == "same version":
        return out + log("info", f"DTR is already at {version}")
    if not ok:
        raise fatal(f"Upgrade from {frm} to {version} is not supported ({row})")
    offline = knob("offline") is not None
    if offline and not f.get("no-image-check"):
        for rid, r in sorted(s["replicas"].items()):
            for img in dtr_images(version)[:-1]:
                if img not in s["nodes"].get(r["node"], {}).get("images", []):
                    raise fatal(f"Image {img} not found on node {r['node']}; load the images "
                                "on every node first")
    s["upgrade"] = {"from": frm, "target": version}
    s.setdefault("upgrade_log", [])
    fail_after = count_knob("fail.upgrade-after")
    crash_after = count_knob("crash.upgrade-after")
    done = 0
    for rid in sorted(s["replicas"]):  # "one replica at a time" [D-upg]
        r = s["replicas"][rid]
        if r["version"] == version:
            out += log("info", f"Replica {rid} is already at {version}")
            continue
        if crash_after is not None and done >= crash_after:
            STATE.save()
            sys.stderr.write(out)
            sys.stderr.flush()
            os.kill(os.getpid(), 9)
        if fail_after is not None and done >= fail_after:
            raise Exit(1, out + log("fatal", f"upgrade interrupted after {done} replicas "
                                           "(dtr-sim: fail.upgrade-after)"))
        for img in dtr_images(version):
            add_image(s, img, r["node"])
        s["upgrade_log"].append(f"{rid} {r['node']} {r['version']} -> {version}")
        r["version"] = version
        out += log("info", f"Upgraded replica {rid} on {r['node']} to {version}")
        done += 1
    if crash_after is not None and done >= crash_after > 0:
        STATE.save()
        os.kill(os.getpid(), 9)
    if minor(frm) == "2.5" and minor(version) == "2.6":
        run_migration(s, existing)
    s["upgrade"] = None
    return out + log("info", f"DTR upgraded to {version}")


def bootstrap_join(s, version, f):
    out = ucp_connect(s, f)
    existing = need_existing(s, f)
    node = f.get("ucp-node")
    if not node:
        raise fatal("ucp-node is required (interactive prompt: EOF)")
    if node not in s["nodes"]:
        raise fatal(f"The UCP node {node} was not found")  # wording unverified
    sick = unhealthy(s)
    if sick and not f.get("unsafe-join"):  # [K-unh]
        reasons = "; ".join(f"{rid}: {reason(s['replicas'][rid])}" for rid in sick)
        raise fatal("This DTR has replicas that are not working correctly. Make sure existing "
                    "DTR replicas are healthy before joining new ones. To ignore this warning, "
                    f"use --unsafe-join. Error: Unhealthy replicas: {', '.join(sick)}; reasons: "
                    f"{reasons}")
    if any(r["node"] == node for r in s["replicas"].values()):
        raise fatal(f"Node {node} already has a DTR replica")
    cv = cluster_version(s)
    if version != cv:
        raise fatal(f"The bootstrapper version {version} does not match the DTR version {cv}")
    rid = f.get("replica-id") or uuid.uuid4().hex[:12]
    if not re.fullmatch(r"[0-9a-f]{12}", rid):
        raise fatal(f"Invalid replica id {rid}: it must be 12 hexadecimal characters")
    if rid in s["replicas"]:
        raise fatal(f"Replica {rid} already exists")
    for img in dtr_images(version):
        add_image(s, img, node)
    s["replicas"][rid] = {"node": node, "version": version, "healthy": True, "running": True,
                          "https_port": int(f.get("replica-https-port") or 443), "labels": True}
    return (out + log("info", "Beginning Docker Trusted Registry replica join")
            + log("info", "Join is complete") + log("info", f"Replica ID is set to: {rid}"))


def bootstrap_remove(s, version, f):
    out = ucp_connect(s, f)
    ids = f.get("replica-ids") or f.get("replica-id")
    if not ids:
        raise fatal("replica-ids is required (interactive prompt: EOF)")
    ids = [i for i in ids.split(",") if i]
    existing = need_existing(s, f)
    if existing in ids:
        raise fatal("Attempting to remove replica without notifying the rest of the cluster")
    for rid in ids:
        if rid not in s["replicas"]:
            raise fatal(f"Replica {rid} not found in this DTR cluster")
    sick = unhealthy(s, exclude=ids)
    if sick:  # "All other replicas must be healthy" [D-rm27]
        raise fatal(f"All other replicas must be healthy; unhealthy: {', '.join(sick)}")
    for rid in ids:
        del s["replicas"][rid]
        out += log("info", f"Removed replica {rid}")
    return out


def reason(r):
    if not r["running"]:
        return "Replica reported health too long ago: 2026-11-28T09:00:00Z"
    if not r["healthy"]:
        return r.get("reason") or "Rethink replica is currently in state: disconnected"
    return "OK"


def docker_run(s, args):
    env, image, rest = parse_run(args)
    m = re.fullmatch(r"docker/dtr:(\d+\.\d+\.\d+)", image)
    if not m:
        loud(f"docker run of image {image}")
    version = m.group(1)
    pre = ""
    if not image_present(s, image):
        if knob("offline") is not None:
            raise Exit(125, f"Unable to find image '{image}' locally\ndocker: Error response "
                            "from daemon: Get https://registry-1.docker.io/v2/: dial tcp: "
                            "lookup registry-1.docker.io: no such host.\n")
        add_image(s, image)
        pre = f"Unable to find image '{image}' locally\n"
        sys.stderr.write(pre)
    if not rest:
        loud("docker/dtr without a command")
    command = rest[0]
    f = parse_flags(version, command, rest[1:], env)
    if knob("record.argv") is not None:
        with open(os.path.join(SIM, "bootstrap.log"), "a", encoding="utf-8") as log:
            log.write(json.dumps({"version": version, "command": command,
                                  "flags": sorted(rest[1:]), "env": sorted(env)}) + "\n")
    if command == "images":
        return "".join(i + "\n" for i in dtr_images(version))
    if knob("fail.bootstrap") is not None:
        raise fatal("dtr-sim: fail.bootstrap")
    logs = {"upgrade": bootstrap_upgrade, "join": bootstrap_join,
            "remove": bootstrap_remove}[command](s, version, f)
    sys.stderr.write(logs)  # logrus writes to stderr
    return ""


# ---------------------------------------------------------------- curl

CURL_SWITCHES = {"s": "silent", "S": "show-error", "f": "fail", "k": "insecure", "L": "location"}
CURL_VALUES = {"K": "config", "X": "request", "H": "header", "d": "data", "u": "user",
               "o": "output", "w": "write-out", "F": "form", "m": "max-time"}
CURL_LONG_SWITCHES = {"silent", "show-error", "fail", "insecure", "location", "fail-with-body"}
CURL_LONG_VALUES = {"config", "request", "header", "data", "data-raw", "data-binary", "user",
                    "output", "write-out", "form", "max-time", "cacert", "resolve", "url",
                    "connect-timeout"}


class CurlError(Exit):
    def __init__(self, code, msg):
        super().__init__(code, f"curl: ({code}) {msg}\n")


def curl_opts(argv, opts):
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            name = a[2:]
            if name in CURL_LONG_SWITCHES:
                opts.append((name, True))
                i += 1
            elif name in CURL_LONG_VALUES:
                if i + 1 >= len(argv):
                    raise Exit(2, f"curl: option {a}: requires parameter\n")
                opts.append((name, argv[i + 1]))
                i += 2
            else:
                raise Exit(2, f"curl: option {a}: is unknown\ncurl: try 'curl --help' for more "
                              "information\n")  # [C-exit] 2
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                if ch in CURL_SWITCHES:
                    opts.append((CURL_SWITCHES[ch], True))
                    j += 1
                elif ch in CURL_VALUES:
                    val = a[j + 1:] or (argv[i + 1] if i + 1 < len(argv) else None)
                    if val is None:
                        raise Exit(2, f"curl: option -{ch}: requires parameter\n")
                    if not a[j + 1:]:
                        i += 1
                    opts.append((CURL_VALUES[ch], val))
                    break
                else:
                    raise Exit(2, f"curl: option -{ch}: is unknown\n")
            i += 1
        else:
            opts.append(("url", a))
            i += 1


def curl_config(path, opts):
    """A curl config file [C-cfg]: `name = "value"`, `name value`, `name: value`."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        raise Exit(26, f"curl: cannot read config from '{path}'\n")
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"-{0,2}([a-z-]+)\s*[=:\s]?\s*(.*)$", line)
        name, raw = m.group(1), m.group(2).strip()
        if raw.startswith('"'):
            val, k = [], 1
            while k < len(raw) and raw[k] != '"':
                if raw[k] == "\\" and k + 1 < len(raw):
                    val.append({"n": "\n", "t": "\t", "r": "\r", "v": "\v"}.get(raw[k + 1], raw[k + 1]))
                    k += 2
                else:
                    val.append(raw[k])
                    k += 1
            raw = "".join(val)
        if name in CURL_LONG_SWITCHES:
            opts.append((name, True))
        elif name in CURL_LONG_VALUES and name != "config":
            opts.append((name, raw))
        else:
            raise Exit(2, f"curl: {path}:1: warning: '{name}' is unknown\n")


def read_ca(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        raise CurlError(77, f"error setting certificate file: {path}")


def curl(s, argv):
    opts = []
    curl_opts(argv, opts)
    for name, val in list(opts):
        if name == "config":
            curl_config(val, opts)
    o = {}
    multi = {"header": [], "data": [], "resolve": [], "form": []}
    for name, val in opts:
        if name in ("data-raw", "data-binary"):
            name = "data"
        if name in multi:
            multi[name].append(val)
        else:
            o[name] = val
    url = o.get("url")
    if not url:
        raise Exit(2, "curl: no URL specified!\n")
    u = urlsplit(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    if u.scheme != "https":
        loud(f"curl over {u.scheme}")
    local = any(r == f"{host}:{port}:127.0.0.1" for r in multi["resolve"])
    # who answers
    if host in ("localhost", "127.0.0.1") or local:
        service, cert_host = "replica", s["dtr"]["host"]
    elif host == s["ucp"]["host"]:
        service, cert_host = "ucp", host
    elif host == s["dtr"]["host"]:
        service, cert_host = "dtr", host
    else:
        raise CurlError(6, f"Could not resolve host: {host}")
    replica = None
    if service == "replica":
        replica = next((rid for rid, r in s["replicas"].items() if r["node"] == NODE
                        and r["running"] and r.get("https_port", 443) == port), None)
        if replica is None:
            raise CurlError(7, f"Failed to connect to {host} port {port} after 0 ms: "
                               "Connection refused")
    if service == "dtr" and not any(r["running"] and r["healthy"] for r in s["replicas"].values()):
        raise CurlError(7, f"Failed to connect to {host} port {port} after 0 ms: Connection refused")
    if not o.get("insecure"):
        ca = s["ucp"]["ca"] if service == "ucp" else s["dtr"]["ca"]
        if "cacert" not in o or read_ca(o["cacert"]) != ca.strip():
            raise CurlError(60, "SSL certificate problem: self-signed certificate in certificate chain")
        if host != cert_host and not local:
            raise CurlError(60, f"SSL: no alternative certificate subject name matches target "
                                f"host name '{host}'")
    method = o.get("request") or ("POST" if multi["data"] else ("POST" if multi["form"] else "GET"))
    headers = {}
    for h in multi["header"]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = "".join(read_data(d) for d in multi["data"])
    req = {"method": method, "path": u.path or "/", "query": parse_qs(u.query),
           "headers": headers, "body": body, "user": o.get("user"), "form": multi["form"],
           "replica": replica}
    handler = {"ucp": ucp_http, "dtr": dtr_http, "replica": dtr_http}[service]
    code, text = handler(s, req)
    if code >= 400 and (o.get("fail") or o.get("fail-with-body")):
        err = f"curl: (22) The requested URL returned error: {code}\n"
        if o.get("fail-with-body"):
            return 22, text, err
        return 22, "", err
    out = text
    if "output" in o:
        with open(o["output"], "w", encoding="utf-8") as f:
            f.write(text)
        out = ""
    if "write-out" in o:
        out += o["write-out"].replace("%{http_code}", str(code)).replace("\\n", "\n")
    return 0, out, ""


def read_data(d):
    if d.startswith("@"):
        src = sys.stdin if d == "@-" else open(d[1:], encoding="utf-8")
        with src:
            return src.read()
    return d


def errors(code, message):
    return json.dumps({"errors": [{"code": code, "message": message}]})


def ucp_http(s, req):
    """UCP's API [D-ucpcli] [L-mke] [S-diver] [K-cfg] [S-stig]."""
    p, m = req["path"], req["method"]
    if p == "/ca" and m == "GET":
        return 200, s["ucp"]["ca"] + "\n"
    if p == "/_ping" and m == "GET":
        return 200, "OK"
    if p == "/auth/login" and m == "POST":
        try:
            cred = json.loads(req["body"])
        except ValueError:
            return 400, errors("INVALID_JSON", "invalid JSON body")
        if cred.get("username") != s["ucp"]["username"] or cred.get("password") != s["ucp"]["password"]:
            return 401, errors("UNAUTHORIZED", "invalid username or password")
        token = uuid.uuid4().hex
        s["ucp"].setdefault("tokens", []).append(token)
        return 200, json.dumps({"auth_token": token})
    auth = req["headers"].get("authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in s["ucp"].get("tokens", []):
        return 401, errors("UNAUTHORIZED", "unauthorized")
    if p == "/version" and m == "GET":
        return 200, json.dumps({"Version": f"ucp/{s['ucp']['version']}", "ApiVersion": "1.40",
                                "Os": "linux", "Arch": "amd64"})
    if p == "/api/ucp/config-toml" and m == "GET":
        trust = "true" if s["ucp"]["require_content_trust"] else "false"
        return 200, (f"[auth]\n  default_new_user_role = \"restrictedcontrol\"\n\n"
                     f"[trust_configuration]\n  require_content_trust = {trust}\n"
                     f"  require_signature_from = []\n")
    loud(f"UCP endpoint {m} {p}")


def dtr_http(s, req):
    """DTR's API [D-lb] [D-mon] [D-jobapi] [D-jobq] [D-vuln] [S-exp] [S-logs]."""
    p, m = req["path"], req["method"]
    if p == "/_ping" and m == "GET":
        if req["replica"] is None:
            loud("/_ping through the load balancer")
        r = s["replicas"][req["replica"]]
        if r["healthy"]:
            return 200, json.dumps({"Error": "", "Healthy": True})
        return 503, json.dumps({"Error": reason(r), "Healthy": False})
    if p == "/ca" and m == "GET":
        return 200, s["dtr"]["ca"] + "\n"
    user = req["user"] or ""
    name, _, secret = user.partition(":")
    if s["dtr"]["tokens"].get(name) != secret or not secret:
        return 401, errors("NOT_AUTHENTICATED", "The client is not authenticated.")
    if p == "/api/v0/meta/cluster_status" and m == "GET":
        return 200, json.dumps({
            "replica_health": {rid: reason(r) for rid, r in sorted(s["replicas"].items())},
            "replica_timestamp": {rid: "2026-11-28T10:00:00Z" for rid in s["replicas"]},
            "replica_readonly": {rid: False for rid in s["replicas"]},
            "current_issues": [{"replica": rid, "issue": reason(s["replicas"][rid])}
                               for rid in unhealthy(s)],
            "rethink_system_tables": {}, "gc_lock_holder": ""})
    if p == "/api/v0/jobs" and m == "GET":
        q = {k: v[0] for k, v in req["query"].items()}
        for k in q:
            if k not in ("action", "worker", "running", "start", "limit"):
                loud(f"jobs query parameter `{k}`")
        jobs = [j for j in s["jobs"] if q.get("action", "any") in ("any", j["action"])]
        if q.get("running") == "true":
            jobs = [j for j in jobs if j["status"] in ("waiting", "running")]
        elif q.get("running") == "false":
            jobs = [j for j in jobs if j["status"] not in ("waiting", "running")]
        start = int(q.get("start", "0"))
        limit = int(q.get("limit", "0")) or len(jobs)
        return 200, json.dumps({"jobs": jobs[start:start + limit]})
    if p == "/api/v0/jobs" and m == "POST":
        if req["headers"].get("content-type") != "application/json":
            return 415, errors("UNSUPPORTED_MEDIA_TYPE", "expected application/json")
        try:
            action = json.loads(req["body"]).get("action")
        except ValueError:
            return 400, errors("INVALID_JSON", "invalid JSON body")
        if action != "metadatastoremigration":
            loud(f"POST /api/v0/jobs action `{action}`")
        job = new_job(s, action, worker=sorted(s["replicas"])[0])
        return 202, json.dumps(job)
    jm = re.fullmatch(r"/api/v0/jobs/([0-9a-f-]+)", p)
    if jm and m == "GET":
        job = next((j for j in s["jobs"] if j["id"] == jm.group(1)), None)
        if job is None:
            return 404, errors("NO_SUCH_JOB", "No job with the given id exists.")
        return 200, json.dumps(job)
    if p == "/api/v0/imagescan/status" and m == "GET":
        return 200, json.dumps(s["dtr"]["vuln"])
    if p == "/api/v0/imagescan/scan/update" and m == "PUT":
        if req["query"].get("online") != ["false"]:
            loud("imagescan update without online=false")
        form = [f for f in req["form"] if f.startswith("upload=@")]
        if len(form) != 1:
            return 400, errors("INVALID_FORM", "expected the multipart field upload")
        try:
            with open(form[0][len("upload=@"):], encoding="utf-8") as f:
                ok = f.read().startswith("dtr-sim vulnerability database\n")
        except OSError:
            raise CurlError(26, "Failed to open/read local data")
        s["dtr"]["vuln"]["lastDBUpdateFailed"] = not ok
        s["dtr"]["vuln"]["lastUpdated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        new_job(s, "update_vuln_db", worker=sorted(s["replicas"])[0])
        return 202, ""
    loud(f"DTR endpoint {m} {p}")


# ---------------------------------------------------------------- dtr-sim: the test's handle

def sim_command(st, args):
    if not args:
        loud("dtr-sim without a command")
    cmd, rest = args[0], args[1:]
    if cmd == "init":
        opts = dict(zip(rest[::2], rest[1::2]))
        version = opts["--version"]
        nodes = [n for n in opts.get("--nodes", "").split(",") if n]
        s = {"ucp": {"host": opts.get("--ucp-host", "ucp.test"), "version": "3.2.5",
                     "username": "admin", "password": opts.get("--ucp-password", ""),
                     "require_content_trust": False, "tokens": [],
                     "ca": "-----BEGIN CERTIFICATE-----\nMIIB-dtr-sim-UCP-CA\n-----END CERTIFICATE-----"},
             "dtr": {"host": opts.get("--dtr-host", "dtr.test"),
                     "tokens": {"admin": opts.get("--api-token", "")},
                     "ca": "-----BEGIN CERTIFICATE-----\nMIIB-dtr-sim-DTR-CA\n-----END CERTIFICATE-----",
                     "vuln": {"lastDBUpdateFailed": False, "lastVulnOverridesDBUpdateFailed": False,
                              "lastUpdated": ""}},
             "nodes": {}, "replicas": {}, "jobs": [], "upgrade": None, "upgrade_log": []}
        for n in nodes:
            s["nodes"][n] = {"mem_bytes": 34359738368, "images": []}
        for item in [i for i in opts.get("--replicas", "").split(",") if i]:
            rid, _, node = item.partition("@")
            s["nodes"].setdefault(node, {"mem_bytes": 34359738368, "images": []})
            s["replicas"][rid] = {"node": node, "version": version, "healthy": True,
                                  "running": True, "https_port": 443, "labels": True}
            for img in dtr_images(version):
                if img not in s["nodes"][node]["images"]:
                    s["nodes"][node]["images"].append(img)
        st.s = s
        return ""
    s = st.need()
    if cmd == "set":  # dtr-sim set KEY/KEY/... VALUE(json)
        obj = s
        keys = rest[0].split("/")
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = json.loads(rest[1])
        return ""
    if cmd == "status":
        return "".join(f"{rid} {r['node']} {r['version']} {str(r['healthy'] and r['running']).lower()}\n"
                       for rid, r in sorted(s["replicas"].items()))
    if cmd == "get":
        obj = s
        for k in rest[0].split("/"):
            obj = obj[k]
        return json.dumps(obj) + "\n"
    loud(f"dtr-sim {cmd}")


STATE = None


def drop_connection():
    """The knob `drop.connection` (holding a node's hostname): `docker ps` there kills the
    SSH session it runs in, as a network failure would end it."""
    pid = os.getppid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0]
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        if cmd.startswith(b"sshd:"):
            os.kill(pid, 9)
            time.sleep(5)
            break
        pid = ppid
    raise Exit(NOT_MODELLED, "dtr-sim: drop.connection: no SSH session to drop\n")


def main():
    global STATE
    prog = sys.argv[1]
    args = sys.argv[2:]
    handle = prog == "docker" and args[:1] == ["dtr-sim"]  # the test's, not capstan's
    if knob("record.argv") is not None and SIM and not handle:
        with open(os.path.join(SIM, "argv.log"), "a", encoding="utf-8") as log:
            log.write(" ".join([prog] + args) + "\n")
            try:
                with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
                    log.write("parent: " + f.read().replace(b"\0", b" ").decode("utf-8", "replace") + "\n")
            except OSError:
                pass
    drop = knob("drop.connection")
    if drop is not None and drop.strip() == NODE and prog == "docker" and args[:1] == ["ps"]:
        drop_connection()
    STATE = State()
    code, out, err = 0, "", ""
    try:
        if prog == "curl":
            code, out, err = curl(STATE.need(), args)
        elif args and args[0] == "dtr-sim":
            out = sim_command(STATE, args[1:])
        else:
            s = STATE.need()
            cmd = args[0] if args else ""
            rest = args[1:]
            if cmd == "container" and rest[:1] == ["inspect"]:
                cmd, rest = "inspect", rest[1:]
            handlers = {"ps": docker_ps, "inspect": docker_inspect, "info": docker_info,
                        "image": docker_image, "pull": docker_pull, "load": docker_load,
                        "run": docker_run}
            if cmd not in handlers:
                loud(f"docker {cmd}")
            out = handlers[cmd](s, rest)
        STATE.save()
    except Exit as e:
        code, out, err = e.code, e.out, e.err
        if code not in (NOT_MODELLED,):
            STATE.save()  # a failed upgrade leaves its part-way state [D-upg]
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
