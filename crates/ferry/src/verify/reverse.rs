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
    // Source node 0 holds every key today (several source nodes: the one
    // owning the key's slot, once cluster sources exist).
    let sdb = match rev {
        Reverse::Merged { .. } => 0,
        Reverse::Db { .. } => job.db,
    };
    // A cluster source: every node, each key answered by its owner (the
    // others answer MOVED).
    let mut s = ctx.src.connect(0, sdb).await?;
    let mut others = Vec::new();
    for i in 1..ctx.src.addrs.len() {
        others.push(ctx.src.connect(i, sdb).await?);
    }
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
                let gone = if others.is_empty() {
                    missing(&mut s, &mine).await?
                } else {
                    missing_on_all(&mut s, &mut others, &mine).await?
                };
                for key in gone {
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
                    call(&mut s, &[b"SELECT", db.to_string().as_bytes()]).await?;
                    keys = missing(&mut s, &keys)
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

/// The keys of `keys` the server does not have: one `EXISTS` for all of
/// them, then (only when some are missing) one pipelined `EXISTS` a key.
async fn missing<'a>(conn: &mut Conn, keys: &'a [Vec<u8>]) -> Result<Vec<&'a [u8]>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<&[u8]> = vec![b"EXISTS"];
    args.extend(keys.iter().map(|k| &k[..]));
    if call(conn, &args).await?.as_int() == Some(keys.len() as i64) {
        return Ok(Vec::new());
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

/// [`missing`] for a cluster source: the keys no node says it has (one
/// pipelined `EXISTS` a key on every node; only the owner of a key's slot
/// answers 1, the others `MOVED`).
async fn missing_on_all<'a>(
    first: &mut Conn,
    others: &mut [Conn],
    keys: &'a [Vec<u8>],
) -> Result<Vec<&'a [u8]>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let cmds: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"EXISTS"[..], k]).collect();
    let mut present = vec![false; keys.len()];
    for conn in std::iter::once(first).chain(others.iter_mut()) {
        let replies = conn
            .call_many(&cmds, std::time::Duration::from_secs(5))
            .await?;
        for (p, r) in present.iter_mut().zip(replies) {
            *p |= r.as_int() == Some(1);
        }
    }
    Ok(keys
        .iter()
        .zip(present)
        .filter(|(_, p)| !p)
        .map(|(k, _)| &k[..])
        .collect())
}
