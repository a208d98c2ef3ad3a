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

/// Issue 18: two replicas on PostgreSQL, in Kubernetes and in compose. The
/// password comes from a secret, never the URL; both replicas answer the
/// probes (a standby is ready); the connection does not go through a
/// transaction pooler.
#[test]
fn the_high_availability_examples_run_two_replicas_on_postgres() {
    let k8s = read("deploy/kubernetes-ha.yaml");
    let deployment = k8s
        .split("\n---")
        .find(|d| d.contains("kind: Deployment"))
        .expect("a Deployment");
    assert!(deployment.contains("replicas: 2"));
    assert!(deployment.contains("readinessProbe:\n            httpGet: {path: /readyz"));
    assert!(deployment.contains("name: CHANNEL_SYNC__STATE__PASSWORD\n              valueFrom:\n                secretKeyRef:"));
    assert!(
        !deployment.contains("volumeClaimTemplates"),
        "no per-pod state volume"
    );
    let url = k8s
        .lines()
        .find_map(|l| l.trim().strip_prefix("url = \""))
        .expect("state.url");
    assert!(
        url.starts_with("postgres://channel_sync@channel-sync-postgres:5432/"),
        "{url}"
    );
    assert!(
        !url.split('@').next().unwrap().contains("channel_sync:"),
        "no password in the URL"
    );
    assert!(k8s.contains("kind: StatefulSet\nmetadata:\n  name: channel-sync-postgres"));
    assert!(
        k8s.contains("transaction pooling"),
        "the PgBouncer caveat is said"
    );
    // The Service the URL names exists.
    assert!(k8s.contains("kind: Service\nmetadata:\n  name: channel-sync-postgres\n"));

    let compose = read("deploy/docker-compose.postgres.yml");
    for service in [
        "  postgres:\n",
        "  channel-sync-a:\n",
        "  channel-sync-b:\n",
    ] {
        assert!(compose.contains(service), "{service}");
    }
    assert!(
        compose.contains(
            "CHANNEL_SYNC__STATE__URL: postgres://channel_sync@postgres:5432/channel_sync"
        )
    );
    assert!(compose.contains("CHANNEL_SYNC__STATE__PASSWORD: ${CHANNEL_SYNC_PG_PASSWORD:?"));
    assert!(
        compose.contains("condition: service_healthy"),
        "the daemons wait for PostgreSQL"
    );
    assert!(
        !compose.contains("- state:/"),
        "no state volume: the state is the database"
    );
}
