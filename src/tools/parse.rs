//! Structured results from tool output. Parsers are lenient: a line they do not
//! understand is skipped, never an error; the raw output always streamed anyway.

use serde_json::{json, Map, Value};

use super::results::{
    to_value, DigResult, DnsRecord, MtrHop, MtrResult, NmapHost, NmapPort, NmapResult, PingResult,
    TracerouteHop, TracerouteResult, WhoisResult,
};

/// The result of `tool` from its standard output.
pub fn result(tool: &str, out: &str) -> Option<Value> {
    match tool {
        "ping" => Some(ping(out)),
        "traceroute" => Some(traceroute(out)),
        "mtr" => Some(mtr(out)),
        "dig" => Some(dig(out)),
        "whois" => Some(whois(out)),
        "nmap" => Some(nmap(out)),
        _ => None,
    }
}

fn num(s: &str) -> Option<f64> {
    s.trim().trim_end_matches('%').parse().ok()
}

/// `4 packets transmitted, 4 received, 0% packet loss, time 3004ms` and
/// `rtt min/avg/max/mdev = 0.030/0.041/0.052/0.008 ms`.
pub fn ping(out: &str) -> Value {
    let mut r = PingResult::default();
    for line in out.lines() {
        if line.contains("packets transmitted") {
            for part in line.split(',') {
                let part = part.trim();
                let first = part.split_whitespace().next().unwrap_or("");
                if part.ends_with("packets transmitted") {
                    r.sent = first.parse::<u64>().ok();
                } else if part.ends_with("received") {
                    r.received = first.parse::<u64>().ok();
                } else if part.ends_with("packet loss") {
                    r.loss_pct = num(first);
                }
            }
        } else if let Some(rest) = line.strip_prefix("rtt min/avg/max/mdev = ") {
            let v: Vec<f64> = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .split('/')
                .filter_map(num)
                .collect();
            if let [min, avg, max, ..] = v[..] {
                (r.rtt_min_ms, r.rtt_avg_ms, r.rtt_max_ms) = (Some(min), Some(avg), Some(max));
            }
        }
    }
    to_value(&r)
}

/// ` 1  127.0.0.1  0.041 ms  0.012 ms  0.010 ms` (`*` for no answer).
pub fn traceroute(out: &str) -> Value {
    let mut hops = Vec::new();
    for line in out.lines().skip_while(|l| l.starts_with("traceroute to")) {
        let mut words = line.split_whitespace();
        let Some(hop) = words.next().and_then(|w| w.parse::<u32>().ok()) else {
            continue;
        };
        let mut address = None;
        let mut rtts = Vec::new();
        let words: Vec<&str> = words.collect();
        for (i, w) in words.iter().enumerate() {
            if words.get(i + 1) == Some(&"ms") {
                if let Some(v) = num(w) {
                    rtts.push(v);
                }
            } else if *w != "ms"
                && *w != "*"
                && address.is_none()
                && w.parse::<std::net::IpAddr>().is_ok()
            {
                address = Some(w.to_string());
            }
        }
        hops.push(TracerouteHop {
            hop,
            address,
            rtt_ms: rtts,
        });
    }
    to_value(&TracerouteResult { hops })
}

/// mtr's report: `  1.|-- 127.0.0.1   0.0%     5    0.1   0.1   0.1   0.1   0.0`.
pub fn mtr(out: &str) -> Value {
    let mut hops = Vec::new();
    for line in out.lines() {
        let Some((n, rest)) = line.trim_start().split_once(".|--") else {
            continue;
        };
        let Ok(hop) = n.trim().parse::<u32>() else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() < 8 {
            continue;
        }
        let address = (w[0] != "???").then(|| w[0].to_string());
        hops.push(MtrHop {
            hop,
            address,
            loss_pct: num(w[1]),
            sent: w[2].parse::<u64>().ok(),
            last_ms: num(w[3]),
            avg_ms: num(w[4]),
            best_ms: num(w[5]),
            worst_ms: num(w[6]),
            stdev_ms: num(w[7]),
        });
    }
    to_value(&MtrResult { hops })
}

/// dig's sections: `;; ANSWER SECTION:` then `name ttl class type data…` lines.
pub fn dig(out: &str) -> Value {
    let mut r = DigResult::default();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            if let Some(st) = rest.split("status: ").nth(1) {
                let st = st.split(',').next().unwrap_or("").trim();
                r.status = Some(st.to_string());
            }
        } else if let Some(name) = line
            .strip_prefix(";; ")
            .and_then(|l| l.strip_suffix(" SECTION:"))
        {
            let key = name.to_ascii_lowercase();
            current = (key != "question" && key != "opt pseudo").then_some(key);
        } else if let Some(t) = line.strip_prefix(";; Query time: ") {
            r.query_time_ms = t
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok());
        } else if let Some(t) = line.strip_prefix(";; SERVER: ") {
            r.server = Some(t.trim().to_string());
        } else if line.trim().is_empty() {
            current = None;
        } else if let Some(sec) = &current {
            if line.starts_with(';') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 4 {
                let rec = DnsRecord {
                    name: f[0].to_string(),
                    ttl: f[1].parse::<u64>().ok(),
                    class: f[2].to_string(),
                    record_type: f[3].to_string(),
                    data: f[4..].join(" "),
                };
                match sec.as_str() {
                    "answer" => r.answer.push(rec),
                    "authority" => r.authority.push(rec),
                    "additional" => r.additional.push(rec),
                    _ => {}
                }
            }
        }
    }
    to_value(&r)
}

/// `Key: value` lines, first occurrence of each key (at most 200 keys).
pub fn whois(out: &str) -> Value {
    let mut r = WhoisResult::default();
    let fields = &mut r.fields;
    for line in out.lines() {
        let line = line.trim();
        if line.starts_with('%') || line.starts_with('#') || line.starts_with(">>>") {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() || k.len() > 64 || fields.len() >= 200 {
                continue;
            }
            fields.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    to_value(&r)
}

/// The tags of an XML document with their attributes, in order (enough for nmap's
/// flat, machine-written output; text content is not needed).
fn tags(xml: &str) -> Vec<(String, Map<String, Value>, bool)> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let Some(end) = rest.find('>') else { break };
        let inner = &rest[..end];
        rest = &rest[end + 1..];
        if inner.starts_with('?') || inner.starts_with('!') {
            continue;
        }
        let closing = inner.starts_with('/');
        let inner = inner.trim_start_matches('/').trim_end_matches('/');
        let name_end = inner
            .find(|c: char| c.is_whitespace())
            .unwrap_or(inner.len());
        let name = inner[..name_end].to_string();
        let mut attrs = Map::new();
        let mut a = &inner[name_end..];
        while let Some(eq) = a.find("=\"") {
            let key = a[..eq].trim().to_string();
            let after = &a[eq + 2..];
            let Some(q) = after.find('"') else { break };
            attrs.insert(key, json!(unescape(&after[..q])));
            a = &after[q + 1..];
        }
        out.push((name, attrs, closing));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// nmap's `-oX` output: hosts with status, addresses and ports.
pub fn nmap(xml: &str) -> Value {
    let mut hosts = Vec::new();
    let mut host: Option<NmapHost> = None;
    let mut port: Option<NmapPort> = None;
    for (name, attrs, closing) in tags(xml) {
        let attr = |k: &str| attrs.get(k).and_then(|v| v.as_str()).map(str::to_string);
        match (name.as_str(), closing) {
            ("host", false) => host = Some(NmapHost::default()),
            ("host", true) => hosts.extend(host.take()),
            ("status", false) => {
                if let Some(h) = host.as_mut() {
                    h.status = attr("state");
                }
            }
            ("address", false) => {
                if let Some(h) = host.as_mut() {
                    if h.address.is_none() {
                        h.address = attr("addr");
                    }
                }
            }
            ("port", false) => {
                port = Some(NmapPort {
                    protocol: attr("protocol"),
                    port: attr("portid").and_then(|v| v.parse::<u16>().ok()),
                    ..NmapPort::default()
                });
            }
            ("state", false) => {
                if let Some(p) = port.as_mut() {
                    p.state = attr("state");
                }
            }
            ("service", false) => {
                if let Some(p) = port.as_mut() {
                    p.service = attr("name");
                    p.product = attr("product");
                    p.version = attr("version");
                    p.extrainfo = attr("extrainfo");
                }
            }
            ("port", true) => {
                if let (Some(p), Some(h)) = (port.take(), host.as_mut()) {
                    h.ports.push(p);
                }
            }
            _ => {}
        }
    }
    to_value(&NmapResult { hosts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary() {
        let out = "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.040 ms\n\n--- 127.0.0.1 ping statistics ---\n2 packets transmitted, 2 received, 0% packet loss, time 1001ms\nrtt min/avg/max/mdev = 0.030/0.041/0.052/0.008 ms\n";
        let r = ping(out);
        assert_eq!(r["sent"], 2);
        assert_eq!(r["received"], 2);
        assert_eq!(r["loss_pct"], 0.0);
        assert_eq!(r["rtt_max_ms"], 0.052);
    }

    #[test]
    fn nmap_xml() {
        let xml = r#"<?xml version="1.0"?><nmaprun><host><status state="up" reason="conn-refused"/>
<address addr="127.0.0.1" addrtype="ipv4"/><ports><port protocol="tcp" portid="22"><state state="open" reason="syn-ack"/><service name="ssh" product="OpenSSH" version="9.2p1" method="probed"/></port>
<port protocol="tcp" portid="23"><state state="closed" reason="conn-refused"/><service name="telnet" method="table"/></port></ports></host></nmaprun>"#;
        let r = nmap(xml);
        let ports = &r["hosts"][0]["ports"];
        assert_eq!(r["hosts"][0]["address"], "127.0.0.1");
        assert_eq!(ports[0]["state"], "open");
        assert_eq!(ports[0]["version"], "9.2p1");
        assert_eq!(ports[1]["port"], 23);
        assert_eq!(ports[1]["state"], "closed");
    }

    #[test]
    fn dig_sections() {
        let out = ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\n;; QUESTION SECTION:\n;box.test.\t\tIN\tA\n\n;; ANSWER SECTION:\nbox.test.\t0\tIN\tA\t192.0.2.5\n\n;; Query time: 0 msec\n";
        let r = dig(out);
        assert_eq!(r["status"], "NOERROR");
        assert_eq!(r["answer"][0]["data"], "192.0.2.5");
    }

    /// Every parser's output fits the `result_schema` its tool declares, for real output
    /// and for garbage (the parsers are lenient, the shape is not).
    #[test]
    fn every_result_fits_its_declared_schema() {
        let tools =
            super::super::Tools::new(super::super::ToolsConfig::default()).expect("registry");
        let samples: &[(&str, &str)] = &[
            ("ping", "2 packets transmitted, 2 received, 0% packet loss, time 1001ms\nrtt min/avg/max/mdev = 0.030/0.041/0.052/0.008 ms\n"),
            ("ping", "5 packets transmitted, 0 received, 100% packet loss, time 4000ms\n"),
            ("traceroute", "traceroute to 127.0.0.1 (127.0.0.1), 30 hops max\n 1  127.0.0.1  0.041 ms  0.012 ms  0.010 ms\n 2  * * *\n"),
            ("mtr", "HOST: box  Loss%   Snt   Last   Avg  Best  Wrst StDev\n  1.|-- 127.0.0.1   0.0%     5    0.1   0.1   0.1   0.1   0.0\n  2.|-- ???  100.0     5    0.0   0.0   0.0   0.0   0.0\n"),
            ("dig", ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\n;; ANSWER SECTION:\nbox.test.\t0\tIN\tA\t192.0.2.5\n\n;; AUTHORITY SECTION:\ntest.\t60\tIN\tNS\tns.test.\n\n;; Query time: 3 msec\n;; SERVER: 127.0.0.1#53(127.0.0.1) (UDP)\n"),
            ("whois", "% comment\nDomain Name: EXAMPLE.COM\nRegistrar: Someone\nDomain Name: again\n"),
            ("nmap", r#"<nmaprun><host><status state="up"/><address addr="127.0.0.1"/><ports><port protocol="tcp" portid="22"><state state="open"/><service name="ssh" product="OpenSSH"/></port></ports></host></nmaprun>"#),
        ];
        // The parameter declarations are JSON Schema too: each compiles, and the
        // defaults they declare pass it.
        for tool in tools.all() {
            let described = serde_json::to_value(tool.describe()).expect("a description");
            let params = &described["params"];
            let v = jsonschema::draft202012::new(params).expect("a valid parameter schema");
            let defaults: serde_json::Map<String, Value> = params["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, p)| p.get("default").map(|d| (k.clone(), d.clone())))
                .collect();
            let mut example = Value::Object(defaults);
            for req in params["required"].as_array().into_iter().flatten() {
                if let Some(name) = req.as_str() {
                    example[name] = json!("127.0.0.1");
                }
            }
            assert!(v.is_valid(&example), "{}: {example}", tool.def.name);
        }
        let garbage = "\u{0}\u{1b}[31m<<<>>> ;; ANSWER SECTION:\nx\n 1.|-- a b c\n<host><port portid=\"99999\">";
        for (tool, out) in samples
            .iter()
            .copied()
            .chain(["ping", "traceroute", "mtr", "dig", "whois", "nmap"].map(|t| (t, garbage)))
        {
            let schema = &tools.get(tool).expect("tool").def.result_schema;
            let v = jsonschema::draft202012::new(schema).expect("a valid schema");
            let r = result(tool, out).expect("a parser");
            let errs: Vec<String> = v.iter_errors(&r).map(|e| e.to_string()).collect();
            assert!(errs.is_empty(), "{tool}: {r} does not fit: {errs:?}");
        }
    }
}
