//! The socket proxy's log (HAProxy `option httplog`): every Docker API call the agent made,
//! with Docker's answer. A start Docker refuses leaves no container event, so this is where the
//! agent's attempts show.

use std::collections::BTreeMap;

/// Statuses of `POST .../containers/<ref>/start` calls for a container known by any of `refs`
/// (its name, its id), as `status -> count`.
pub fn start_calls(log: &str, refs: &[&str]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some((head, request)) = line.split_once('"') else {
            continue;
        };
        let mut words = request.split_whitespace();
        if words.next() != Some("POST") {
            continue;
        }
        let path = words.next().unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        let Some(target) = path
            .strip_suffix("/start")
            .and_then(|p| p.rsplit_once("/containers/"))
            .map(|(_, t)| t)
        else {
            continue;
        };
        let hit = refs.iter().any(|r| {
            !r.is_empty() && (target == *r || (target.len() >= 12 && r.starts_with(target)))
        });
        if !hit {
            continue;
        }
        // client [date] frontend backend/server timers STATUS bytes ...
        let status = head.split_whitespace().nth(5).unwrap_or("?");
        *out.entry(status.to_string()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_start_calls_of_one_container_by_status() {
        let id = "25ab1f76fd5a94901f1e4ad7795bc856e6a6dd5920e186ca4c96d64bf70d7b31";
        let log = format!(
            "172.24.0.3:39946 [05/Dec/2026:20:11:12.909] docker-api dockerd/dockerd 0/0/0/489/489 204 160 - - ---- 3/3/2/2/0 0/0 \"POST /containers/{id}/start HTTP/1.1\"\n\
             172.24.0.3:39947 [05/Dec/2026:20:11:22.909] docker-api dockerd/dockerd 0/0/0/4/4 400 160 - - ---- 3/3/2/2/0 0/0 \"POST /v1.41/containers/p-webapp-8/start HTTP/1.1\"\n\
             172.24.0.3:39948 [05/Dec/2026:20:11:32.909] docker-api dockerd/dockerd 0/0/0/4/4 400 160 - - ---- 3/3/2/2/0 0/0 \"POST /v1.41/containers/p-webapp-8/start HTTP/1.1\"\n\
             172.24.0.3:39949 [05/Dec/2026:20:11:32.909] docker-api dockerd/dockerd 0/0/0/4/4 204 160 - - ---- 3/3/2/2/0 0/0 \"POST /v1.41/containers/p-webapp-1/start HTTP/1.1\"\n\
             172.24.0.3:39950 [05/Dec/2026:20:11:32.909] docker-api dockerd/dockerd 0/0/0/4/4 200 160 - - ---- 3/3/2/2/0 0/0 \"GET /v1.41/containers/p-webapp-8/json HTTP/1.1\"\n"
        );
        let c = start_calls(&log, &["p-webapp-8", id]);
        assert_eq!(c.get("400"), Some(&2));
        assert_eq!(c.get("204"), Some(&1));
        assert_eq!(c.values().sum::<usize>(), 3);
        assert!(start_calls(&log, &["p-webapp-2"]).is_empty());
    }
}
