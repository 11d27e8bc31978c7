//! Beyond one Prometheus: an edge Prometheus per cluster that labels what it scrapes with its
//! cluster (`external_labels`) and remote-writes it to a central Prometheus
//! (`--web.enable-remote-write-receiver`) that evaluates the generated rules, as a central ruler
//! (Mimir's, Thanos Ruler) does. The configurations are derived from a generated
//! `prometheus.yml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::generate::read;

/// The generated `prometheus.yml` of `dir` (a preset's directory) as JSON.
fn generated_config(dir: &Path) -> Value {
    serde_yaml_ng::from_str(&read(&dir.join("prometheus/prometheus.yml"))).expect("prometheus.yml")
}

/// Writes `config` as `name` next to the generated `prometheus.yml` (so its relative
/// `rule_files` resolve) and returns its path.
fn write_config(dir: &Path, name: &str, config: &Value) -> PathBuf {
    let path = dir.join("prometheus").join(name);
    std::fs::write(&path, serde_yaml_ng::to_string(config).expect("YAML"))
        .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    path
}

/// An edge's configuration: the generated scrape configuration of `dir` (its cluster's
/// targets), every series labelled with the cluster and remote-written to the central server.
/// Its rules are left to the central server: were the edges to evaluate them too and
/// remote-write the results, the central server would record the same series twice.
pub fn edge_config(dir: &Path, cluster: &str, central: SocketAddr) -> PathBuf {
    let mut config = generated_config(dir);
    let object = config.as_object_mut().expect("a mapping");
    object.remove("rule_files");
    object.remove("alerting");
    config["global"]["external_labels"] = json!({ "cluster": cluster });
    config["remote_write"] = json!([{
        "url": format!("http://{central}/api/v1/write"),
        // Every scrape sent within a tenth of the scrape interval (1 s): the central server
        // evaluates its rules on what has arrived, and `rate()` bridges a missing newest sample
        // only while it is younger than that (dashboard_truth_live's module documentation).
        // The WAL watcher reads every 10 ms (Prometheus 2.42), the batch leaves 10 ms later.
        "queue_config": { "batch_send_deadline": "10ms", "max_samples_per_send": 2000 },
    }]);
    write_config(dir, "edge.yml", &config)
}

/// The central server's configuration: the generated rules (and evaluation interval) of `dir`,
/// nothing to scrape; its data arrives by remote write.
pub fn central_config(dir: &Path) -> PathBuf {
    let mut config = generated_config(dir);
    let object = config.as_object_mut().expect("a mapping");
    object.remove("alerting");
    config["scrape_configs"] = json!([]);
    write_config(dir, "central.yml", &config)
}

/// `prometheus` with `config`, its data in `data`, its web server on `listen`; the caller adds
/// `--web.enable-remote-write-receiver` for the central server and starts it.
pub fn prometheus(binary: &Path, config: &Path, data: &Path, listen: SocketAddr) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"));
    command
}
