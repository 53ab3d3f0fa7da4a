//! Builds the browser client (`web/`) with npm and Vite into `web/dist/`, which
//! `src/web.rs` embeds. Runs when a web source or package file changed (cargo's
//! `rerun-if-changed`), so a plain `cargo build` on a fresh machine with Node and npm
//! produces a binary with the full console. Without npm, or if the build fails, the
//! Rust build fails with the reason: the gateway never ships without its client.

use std::path::Path;
use std::process::Command;

const WATCHED: &[&str] = &[
    "web/src",
    "web/index.html",
    "web/docs.html",
    "web/package.json",
    "web/package-lock.json",
    "web/vite.config.ts",
    "web/tsconfig.json",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for p in WATCHED {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=NPM");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_string());

    // `npm ci` only when the installed tree is missing or older than the lock file: it
    // wipes node_modules, which costs seconds on every source change otherwise.
    let installed = web.join("node_modules/.package-lock.json");
    let lock = web.join("package-lock.json");
    let stale = match (modified(&installed), modified(&lock)) {
        (Some(i), Some(l)) => i < l,
        _ => true,
    };
    if stale && !try_run(&npm, &["ci", "--no-audit", "--no-fund"], &web) {
        // npm 11 can reject a lock file it just wrote when an optional platform package
        // (a rollup or esbuild binary for another OS) is not served by the registry
        // (npm/cli#9846). `npm install` installs from the same lock file.
        println!(
            "cargo:warning=`npm ci` refused the lock file; installing with `npm install` instead"
        );
        run(&npm, &["install", "--no-audit", "--no-fund"], &web);
    }
    run(&npm, &["run", "build"], &web);
    if !web.join("dist/index.html").exists() {
        fail("`npm run build` finished but web/dist/index.html is missing");
    }
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Runs npm; `false` if it ran and failed (its output goes to the build log).
fn try_run(npm: &str, args: &[&str], dir: &Path) -> bool {
    match Command::new(npm).args(args).current_dir(dir).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stdout));
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(_) => false,
    }
}

fn run(npm: &str, args: &[&str], dir: &Path) {
    let what = format!("{npm} {}", args.join(" "));
    let out = match Command::new(npm).args(args).current_dir(dir).output() {
        Ok(o) => o,
        Err(e) => fail(&format!(
            "cannot run `{what}` in web/ ({e}). The gateway embeds its browser client, \
             built with Node.js (>= 20.19) and npm: install them (e.g. `apt-get install \
             nodejs npm`) or set NPM to the npm binary, then build again."
        )),
    };
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!(
            "`{what}` in web/ failed ({}); its output is above",
            out.status
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: building the web client: {msg}");
    println!("cargo:warning=building the web client: {msg}");
    std::process::exit(1);
}
