//! Target → source: each target master's keys (inside the filter) that the
//! source does not have, one task per master.

use anyhow::Result;
use ferry_cluster::Conn;
use tokio::sync::mpsc;

use super::engine::{Ctx, Msg, extra, scan};
use super::read::{call, call_many, compared_key};
use super::report::Tally;
use super::{Job, Reverse};

/// Scan target master `node` from `cursor`, reporting each step.
pub(crate) async fn reverse_task(
    ctx: &Ctx,
    job: &Job,
    node: usize,
    mut cursor: Vec<u8>,
    out: mpsc::Sender<Msg>,
) -> Result<()> {
    let Some(rev) = &job.reverse else {
        return Ok(());
    };
    let tdb = if ctx.tgt.standalone { job.db } else { 0 };
    let mut t = ctx.tgt.nodes.connect(node, tdb).await?;
    // One source node holds every key, or a cluster source's master of
    // the key's slot.
    let sdb = match rev {
        Reverse::Merged { .. } => 0,
        Reverse::Db { .. } => job.db,
    };
    let mut srcs = ctx.src.connect_all(sdb).await?;
    let count = ctx.step().to_string();
    loop {
        let (next, keys) = scan(&mut t, &cursor, &count).await?;
        cursor = next;
        let done = cursor == b"0";
        let mut tally = Tally {
            target_scanned: keys.len() as u64,
            ..Tally::default()
        };
        ctx.pace(keys.len() as u64).await;
        match rev {
            Reverse::Db { prefixes, first } => {
                let mut mine = Vec::new();
                for k in keys {
                    if prefixes.is_empty() {
                        if compared_key(&ctx.cfg.filter, &k) {
                            mine.push(k);
                        }
                        continue;
                    }
                    // Into a cluster with db_prefix: this db's keys without
                    // the prefix; the first job also reports keys no carried
                    // db's prefix names.
                    let owner = prefixes
                        .iter()
                        .filter(|(_, p)| k.starts_with(p))
                        .max_by_key(|(_, p)| p.len());
                    match owner {
                        Some((d, p))
                            if *d == job.db && compared_key(&ctx.cfg.filter, &k[p.len()..]) =>
                        {
                            mine.push(k[p.len()..].to_vec());
                        }
                        None if *first && !ferry_ops::is_reserved(&k) => extra(
                            ctx,
                            job,
                            &mut tally,
                            &k,
                            "on the target under no db_prefix of a carried db",
                        ),
                        _ => {}
                    }
                }
                for key in missing_on(ctx, &mut srcs, &mine).await? {
                    extra(
                        ctx,
                        job,
                        &mut tally,
                        key,
                        "present on the target, not on the source",
                    );
                }
            }
            Reverse::Merged { dbs } => {
                let mut keys: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| compared_key(&ctx.cfg.filter, k))
                    .collect();
                for db in dbs {
                    if keys.is_empty() {
                        break;
                    }
                    for s in srcs.iter_mut() {
                        call(s, &[b"SELECT", db.to_string().as_bytes()]).await?;
                    }
                    keys = missing_on(ctx, &mut srcs, &keys)
                        .await?
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect();
                }
                let what = format!("present on the target, in none of the source's dbs {dbs:?}");
                for key in keys {
                    extra(ctx, job, &mut tally, &key, &what);
                }
            }
        }
        let msg = Msg::Rev {
            node,
            cursor: cursor.clone(),
            done,
            tally,
        };
        if out.send(msg).await.is_err() || done {
            return Ok(());
        }
    }
}

/// The keys of `keys` the source does not have, each asked of the node
/// holding it (in `keys` order).
async fn missing_on<'a>(
    ctx: &Ctx,
    srcs: &mut [Conn],
    keys: &'a [Vec<u8>],
) -> Result<Vec<&'a [u8]>> {
    if !ctx.src.is_cluster() {
        return missing(&mut srcs[0], keys, true).await;
    }
    let mut by_node: Vec<Vec<Vec<u8>>> = vec![Vec::new(); srcs.len()];
    for k in keys {
        by_node[ctx.src.node_of(k)?].push(k.clone());
    }
    let mut gone = std::collections::HashSet::new();
    for (n, mine) in by_node.iter().enumerate() {
        for k in missing(&mut srcs[n], mine, false).await? {
            gone.insert(k.to_vec());
        }
    }
    Ok(keys
        .iter()
        .filter(|k| gone.contains(&k[..]))
        .map(|k| &k[..])
        .collect())
}

/// The keys of `keys` the server does not have: (`multi`: one `EXISTS`
/// for all of them, then only when some are missing) one pipelined
/// `EXISTS` a key. A cluster node refuses a multi-key `EXISTS` across slots.
async fn missing<'a>(conn: &mut Conn, keys: &'a [Vec<u8>], multi: bool) -> Result<Vec<&'a [u8]>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if multi {
        let mut args: Vec<&[u8]> = vec![b"EXISTS"];
        args.extend(keys.iter().map(|k| &k[..]));
        if call(conn, &args).await?.as_int() == Some(keys.len() as i64) {
            return Ok(Vec::new());
        }
    }
    let cmds: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"EXISTS"[..], k]).collect();
    let replies = call_many(conn, &cmds).await?;
    Ok(keys
        .iter()
        .zip(replies)
        .filter(|(_, r)| r.as_int() == Some(0))
        .map(|(k, _)| &k[..])
        .collect())
}
