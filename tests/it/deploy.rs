//! The deploy examples hang together: what one file names, another defines;
//! the README's `docker run` is the Dockerfile's; nothing restart-loops on a
//! configuration error. (Checked as text: no Docker or cluster here.)

use crate::helpers::repo;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// The `docker run` command of a text, one line per argument line, without
/// comment markers and indentation.
fn docker_run(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("docker run"))
        .expect("a docker run command");
    let mut out = Vec::new();
    for l in &lines[start..] {
        out.push(l.clone());
        if !l.ends_with('\\') {
            break;
        }
    }
    out
}

#[test]
fn the_readme_and_the_dockerfile_give_the_same_docker_run() {
    let readme = docker_run(&read("README.md"));
    assert_eq!(readme, docker_run(&read("Dockerfile")));
    let joined = readme.join(" ");
    assert!(
        joined.contains("--stop-timeout 40"),
        "longer than the 30 s grace"
    );
    assert!(
        joined.contains("-e CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL \\"),
        "the secret comes from the shell, not the command line"
    );
    assert!(read("Dockerfile").contains("docker build -t channel-sync:0.1.0 ."));
}

#[test]
fn every_claim_is_defined_and_the_statefulset_has_a_headless_service() {
    let k8s = read("deploy/kubernetes.yaml");
    let cron = read("deploy/kubernetes-cronjob.yaml");
    let both = format!("{k8s}\n{cron}");
    for claim in both
        .lines()
        .filter_map(|l| l.split("claimName: ").nth(1))
        .map(|c| c.trim_end_matches(['}', ' ']).to_string())
    {
        let defined = both.split("\n---").any(|doc| {
            doc.contains("kind: PersistentVolumeClaim") && doc.contains(&format!("name: {claim}\n"))
        });
        assert!(defined, "claim {claim} is used but never defined");
    }
    let service = k8s
        .lines()
        .find_map(|l| l.trim().strip_prefix("serviceName: "))
        .unwrap();
    let headless = k8s.split("\n---").any(|doc| {
        doc.contains("kind: Service")
            && doc.contains(&format!("name: {service}\n"))
            && doc.contains("clusterIP: None")
    });
    assert!(headless, "serviceName {service} must be a headless Service");
    for (name, text) in [
        ("kubernetes.yaml", &k8s),
        ("kubernetes-cronjob.yaml", &cron),
    ] {
        assert!(text.contains("imagePullPolicy: IfNotPresent"), "{name}");
        assert!(!text.contains(":latest"), "{name} deploys a moving tag");
    }
}

#[test]
fn compose_checks_the_configuration_once_instead_of_restart_looping() {
    let compose = read("deploy/docker-compose.yml");
    assert!(compose.contains("command: [\"check-config\""));
    assert!(compose.contains("condition: service_completed_successfully"));
    assert!(compose.contains("restart: \"no\""));
    assert!(!compose.contains(":latest"));
}
