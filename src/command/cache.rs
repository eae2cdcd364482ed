//! `capstan cache show|clear`: the local store's files, or each host's remote store.

use crate::cache::{Backend, LocalStore};
use crate::cli::{CacheAction, CacheArgs};
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::secrets;

/// `capstan cache show|clear`: the local store's files, or each host's remote store.
pub fn run(args: &CacheArgs) -> Result<i32, Error> {
    let inventory = Inventory::load(&args.inventory)?;
    let hosts = inventory
        .select(args.limit.as_deref().unwrap_or("all"))
        .map_err(|e| Error::Refused(e.to_string()))?;
    let cache = inventory.settings.cache();
    match Backend::from_settings(&cache) {
        Backend::Off => {
            println!("the result cache is off for this inventory ([settings] cache = \"off\")");
            Ok(exit::SUCCESS)
        }
        Backend::Local(store) => Ok(cache_local(&store, &hosts, args.action)),
        Backend::Remote { ttl } => {
            cache_remote(&hosts, args, ttl, inventory.settings.connect_concurrency())
        }
    }
}

fn cache_local(store: &LocalStore, hosts: &[&crate::inventory::Host], action: CacheAction) -> i32 {
    let mut code = exit::SUCCESS;
    for h in hosts {
        match action {
            CacheAction::Show => {
                let (cache, warning) = store.load(&h.name);
                if let Some(w) = warning {
                    eprintln!("warning: {w}");
                }
                print_entries(&h.name, &cache);
            }
            CacheAction::Clear => match store.clear(&h.name) {
                Ok(n) => println!(
                    "{}: cleared {n} entr{}",
                    h.name,
                    if n == 1 { "y" } else { "ies" }
                ),
                Err(e) => {
                    eprintln!("error: {e}");
                    code = exit::USAGE;
                }
            },
        }
    }
    code
}

fn cache_remote(
    hosts: &[&crate::inventory::Host],
    args: &CacheArgs,
    ttl: std::time::Duration,
    concurrency: usize,
) -> Result<i32, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let opts = super::connect_options(&args.ssh);
    let backend = Backend::Remote { ttl };
    let mut code = exit::SUCCESS;
    runtime.block_on(async {
        // One helper connects everywhere at once; the hosts are then shown in order.
        let connected = crate::connect::all(hosts, &opts, concurrency).await;
        for (name, e) in &connected.unreachable {
            eprintln!("{name}: {}", secrets::mask(&e.to_string()));
            code = exit::HOSTS_FAILED;
        }
        for (name, why) in &connected.key_problems {
            eprintln!("{name}: {}", secrets::mask(why));
            code = exit::HOSTS_FAILED;
        }
        for h in hosts {
            let Some((session, _)) = connected.sessions.get(&h.name) else {
                continue;
            };
            match args.action {
                CacheAction::Show => {
                    let (cache, warning) = backend.load(&h.name, session).await;
                    if let Some(w) = warning {
                        eprintln!("warning: {}: {w}", h.name);
                    }
                    print_entries(&h.name, &cache);
                }
                CacheAction::Clear => {
                    let req = crate::transport::ExecRequest {
                        command: "rm -f \"$HOME/.capstan/cache.jsonl\"".into(),
                        stdin: None,
                        timeout: Some(std::time::Duration::from_secs(60)),
                    };
                    match session.exec(&req).await {
                        Ok(out) if out.status.success() => println!("{}: cleared", h.name),
                        Ok(out) => {
                            eprintln!("{}: cannot clear the cache ({})", h.name, out.status);
                            code = exit::HOSTS_FAILED;
                        }
                        Err(e) => {
                            eprintln!("{}: {e}", h.name);
                            code = exit::HOSTS_FAILED;
                        }
                    }
                }
            }
        }
        connected.close().await;
    });
    Ok(code)
}

fn print_entries(host: &str, cache: &crate::cache::HostCache) {
    let mut entries: Vec<_> = cache.entries().collect();
    entries.sort_by_key(|e| e.recorded_at);
    println!(
        "{host}: {} entr{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
    for e in entries {
        let when = chrono::DateTime::from_timestamp(i64::try_from(e.recorded_at).unwrap_or(0), 0)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string());
        let what = if e.changed { "changed" } else { "ok" };
        println!(
            "  {when}  {}  {} / {}  ({what})",
            &e.key[..12],
            e.play,
            e.task
        );
    }
}
