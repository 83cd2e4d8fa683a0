//! deploy/kubernetes and the Containerfile: the manifests validate against
//! Kubernetes' schema, the Indexed Job sets what shard selection reads, and
//! the image's run stage has what the binary needs and nothing to log in with.

use crate::support::*;
use mailferry::shard::Shard;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A YAML file's documents as JSON (PyYAML comes with kubernetes-validate).
fn yaml(path: &std::path::Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn env_of(container: &serde_json::Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

#[test]
fn the_kubernetes_manifests_validate_and_the_indexed_job_gives_each_pod_its_shard() {
    let dir = repo().join("deploy/kubernetes");
    let files: Vec<_> = ["job.yaml", "configmap.yaml", "secret.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let checked = std::process::Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(&files)
        .output()
        .expect("kubernetes-validate (scripts/test.sh installs it from PyPI)");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let job = yaml(&files[0]).remove(0);
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(
        spec["parallelism"].as_u64(),
        Some(n),
        "one pod per shard at once"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["restartPolicy"], "Never",
        "backoffLimitPerIndex needs it"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(env_of(container, "MAILFERRY_SHARDS"), Some(n.to_string()));
    let store = env_of(container, "MAILFERRY_STORE").unwrap();
    assert!(
        mailferry::store::remote::ObjectUrl::parse(&store)
            .unwrap()
            .is_some(),
        "{store} is an object-storage address"
    );
    // The working directory is a writable volume; the settings a read-only one.
    let work = env_of(container, "MAILFERRY_WORK_DIR").unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mounted = |path: &str| mounts.iter().find(|m| m["mountPath"] == path).cloned();
    assert!(
        mounted(&work).is_some_and(|m| m["readOnly"] != true),
        "{work}"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let accounts = args[args.iter().position(|a| *a == "--accounts").unwrap() + 1];
    let settings = std::path::Path::new(accounts).parent().unwrap();
    assert!(mounted(settings.to_str().unwrap()).is_some(), "{accounts}");
    // At least twice the measured 42 MB peak of one account.
    let memory = container["resources"]["requests"]["memory"]
        .as_str()
        .unwrap();
    let mib: u64 = memory.trim_end_matches("Mi").parse().unwrap();
    assert!(mib >= 84, "{memory}");

    // The ConfigMap and the Secret, as the projected volume lays them out.
    let etc = tempfile::tempdir().unwrap();
    let config = yaml(&files[1]).remove(0);
    for (name, text) in config["data"].as_object().unwrap() {
        std::fs::write(etc.path().join(name), text.as_str().unwrap()).unwrap();
    }
    let secret = yaml(&files[2]).remove(0);
    for (name, text) in secret["stringData"].as_object().unwrap() {
        std::fs::write(etc.path().join(name), text.as_str().unwrap()).unwrap();
    }
    let batch = etc
        .path()
        .join(std::path::Path::new(accounts).file_name().unwrap());
    // Each pod's JOB_COMPLETION_INDEX, with the Job's environment: the
    // shard it takes, of the accounts its files name.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for i in 0..n {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
        cmd.args(["mirror", "--accounts"])
            .arg(&batch)
            .args(["--host", "127.0.0.1", "--port", &closed.to_string()])
            .env(
                "MAILFERRY_SHARDS",
                env_of(container, "MAILFERRY_SHARDS").unwrap(),
            )
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("MAILFERRY_STORE", etc.path().join("store"));
        let run = Run::of(&mut cmd);
        let mine = usize::from(Shard::of("alice@contoso.com", n as u32) == i as u32);
        let said = format!("shard {i}/{n}: {mine} of the 1 accounts");
        assert!(run.stderr.contains(&said), "{said} not in: {}", run.stderr);
    }
}

#[test]
fn the_image_runs_the_binary_as_non_root_without_a_shell() {
    let text = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].contains("rust:1.95"),
        "built with this toolchain: {}",
        froms[0]
    );
    let run_stage = froms[1];
    assert!(
        run_stage.contains("distroless/cc") && run_stage.ends_with(":nonroot"),
        "{run_stage}"
    );
    let after_run_stage: Vec<&&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("FROM gcr.io/distroless"))
        .collect();
    assert!(
        !after_run_stage.iter().any(|l| l.starts_with("RUN ")),
        "nothing runs in the run stage (it has no shell)"
    );
    assert!(after_run_stage.contains(&&"USER nonroot"));
    let entry = after_run_stage
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    assert!(entry.contains("[\""), "exec form, no shell: {entry}");
    assert!(text.contains("--locked"), "the lock file's versions");
    // What the binary links: only what the distroless cc image holds.
    let ldd = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_mailferry"))
        .output()
        .unwrap();
    let has = [
        "linux-vdso.so.1",
        "libgcc_s.so.1",
        "libm.so.6",
        "libc.so.6",
        "ld-linux-x86-64.so.2",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
    ];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line.split_whitespace().next().unwrap_or("");
        let name = lib.rsplit('/').next().unwrap();
        assert!(has.contains(&name), "the image lacks {lib} ({line})");
    }
    let ignored = std::fs::read_to_string(repo().join(".containerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l.trim() == "target"),
        "no build output in the context"
    );
}
