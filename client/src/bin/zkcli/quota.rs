//! setquota, listquota and delquota: zkCli.sh 3.9's quota commands.
//!
//! Owns the client side of ZooKeeper quotas: the `/zookeeper/quota/<path>` nodes with
//! their `zookeeper_limits` and `zookeeper_stats` children, and the StatsTrack text
//! kept in them ("count=1,bytes=-1=;byteHardLimit=-1;countHardLimit=10"). Never
//! computes usage: the server keeps `zookeeper_stats` up to date.

use zkd_client::{Acl, CreateMode, Error, ErrorCode};

use crate::commands::{check_path, err_line, out, wrap, CliError, Ctx};
use crate::opts::Parsed;

const QUOTA_ZOOKEEPER: &str = "/zookeeper/quota";
const PROC_ZOOKEEPER: &str = "/zookeeper";
const LIMIT_NODE: &str = "zookeeper_limits";
const STAT_NODE: &str = "zookeeper_stats";

fn quota_path(path: &str) -> String {
    format!("{QUOTA_ZOOKEEPER}{path}")
}

fn limit_path(path: &str) -> String {
    format!("{QUOTA_ZOOKEEPER}{path}/{LIMIT_NODE}")
}

fn stat_path(path: &str) -> String {
    format!("{QUOTA_ZOOKEEPER}{path}/{STAT_NODE}")
}

/// StatsTrack: named limits or counters, -1 meaning unset.
#[derive(Default, Clone)]
struct StatsTrack {
    stats: Vec<(String, i64)>,
}

impl StatsTrack {
    fn parse(data: &[u8]) -> StatsTrack {
        let text = String::from_utf8_lossy(data);
        let mut st = StatsTrack::default();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            let k = kv.next().unwrap_or("");
            let v = kv.next().filter(|v| !v.is_empty()).unwrap_or("-1");
            st.set(k, v.parse().unwrap_or(-1));
        }
        st
    }

    fn get(&self, k: &str) -> i64 {
        self.stats
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| *v)
            .unwrap_or(-1)
    }

    fn set(&mut self, k: &str, v: i64) {
        match self.stats.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = v,
            None => self.stats.push((k.to_string(), v)),
        }
    }

    /// count and bytes first (what pre-3.7 readers understand), then an extra '=' that
    /// makes old parsers ignore the rest, then the other keys sorted.
    fn render(&self) -> String {
        let mut s = format!("count={},bytes={}", self.get("count"), self.get("bytes"));
        let mut rest: Vec<&(String, i64)> = self
            .stats
            .iter()
            .filter(|(k, _)| k != "count" && k != "bytes")
            .collect();
        if !rest.is_empty() {
            s.push('=');
            rest.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in rest {
                s.push_str(&format!(";{k}={v}"));
            }
        }
        s
    }
}

/// commons-cli OptionGroup: at most one of `letters`, reported as zkCli.sh does.
pub fn check_group(p: &Parsed, letters: &[char]) -> Result<Option<char>, CliError> {
    let mut selected: Option<char> = None;
    for c in p.opt_order() {
        if !letters.contains(&c) {
            continue;
        }
        match selected {
            Some(s) if s != c => {
                return Err(CliError::new(format!(
                    "org.apache.commons.cli.AlreadySelectedException: The option '{c}' was specified but an option from this group has already been selected: '{s}'"
                )))
            }
            _ => selected = Some(c),
        }
    }
    Ok(selected)
}

fn open_acl() -> Vec<Acl> {
    vec![Acl::new(zkd_client::perms::ALL, "world", "anyone")]
}

/// Creates a persistent node with null data, as ZooKeeper.create(path, null, ...).
async fn create_null(ctx: &Ctx<'_>, path: &str) -> Result<(), Error> {
    let req = zkd_proto::CreateRequest {
        path: path.to_string(),
        data: None,
        acl: open_acl(),
        flags: CreateMode::Persistent.flag(),
    };
    use zkd_proto::Record;
    let (h, _) = ctx
        .zk()
        .request_raw(zkd_proto::OpCode::Create as i32, req.to_bytes())
        .await?;
    match Error::from_code(h.err) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn ignore_exists(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::Keeper(ErrorCode::NodeExists)) => Ok(()),
        other => other,
    }
}

pub async fn setquota(ctx: &mut Ctx<'_>, p: &Parsed) -> Result<(), CliError> {
    let path = &p.args[1];
    if path.starts_with(QUOTA_ZOOKEEPER) {
        err_line(&format!(
            "cannot set a quota under the path: {QUOTA_ZOOKEEPER}"
        ));
        return Ok(());
    }
    let mut quota = StatsTrack::default();
    quota.set("count", -1);
    quota.set("bytes", -1);
    quota.set("countHardLimit", -1);
    quota.set("byteHardLimit", -1);
    for (c, key, min, what) in [
        ('n', "count", 1, "the num quota must be greater than zero"),
        (
            'b',
            "bytes",
            0,
            "the bytes quota must be greater than or equal to zero",
        ),
        (
            'N',
            "countHardLimit",
            1,
            "the num quota must be greater than zero",
        ),
        (
            'B',
            "byteHardLimit",
            0,
            "the bytes quota must be greater than or equal to zero",
        ),
    ] {
        let Some(v) = p.value(c) else { continue };
        // -n/-N are ints, -b/-B longs.
        let parsed: Option<i64> = if c == 'n' || c == 'N' {
            v.parse::<i32>().ok().map(i64::from)
        } else {
            v.parse::<i64>().ok()
        };
        match parsed {
            None => {
                err_line("NumberFormatException happens when parsing the option value");
                return Ok(());
            }
            Some(n) if n < min => {
                err_line(what);
                return Ok(());
            }
            Some(n) => quota.set(key, n),
        }
    }
    create_quota(ctx, path, &quota).await
}

async fn create_quota(ctx: &mut Ctx<'_>, path: &str, quota: &StatsTrack) -> Result<(), CliError> {
    check_path(path)?;
    let exists = ctx
        .zk()
        .exists(path, false)
        .await
        .map_err(|e| wrap(e, path))?;
    if exists.is_none() {
        return Err(CliError::new(format!("{path} does not exist.")));
    }
    check_child_quota(ctx, path).await?;
    check_parent_quota(ctx, path).await?;
    let zk = ctx.zk();
    if zk
        .exists(QUOTA_ZOOKEEPER, false)
        .await
        .map_err(|e| wrap(e, QUOTA_ZOOKEEPER))?
        .is_none()
    {
        // As ZooKeeper's CLI: a NodeExists on the first skips the second.
        let r = async {
            create_null(ctx, PROC_ZOOKEEPER).await?;
            create_null(ctx, QUOTA_ZOOKEEPER).await
        };
        ignore_exists(r.await).map_err(|e| wrap(e, QUOTA_ZOOKEEPER))?;
    }
    let mut qpath = QUOTA_ZOOKEEPER.to_string();
    for part in path.split('/').skip(1).filter(|s| !s.is_empty()) {
        qpath.push('/');
        qpath.push_str(part);
        if zk
            .exists(&qpath, false)
            .await
            .map_err(|e| wrap(e, &qpath))?
            .is_none()
        {
            ignore_exists(create_null(ctx, &qpath).await).map_err(|e| wrap(e, &qpath))?;
        }
    }
    let stat_p = format!("{qpath}/{STAT_NODE}");
    let limit_p = format!("{qpath}/{LIMIT_NODE}");
    let acl = open_acl();
    if zk
        .exists(&limit_p, false)
        .await
        .map_err(|e| wrap(e, &limit_p))?
        .is_none()
    {
        zk.create(
            &limit_p,
            quota.render().as_bytes(),
            &acl,
            CreateMode::Persistent,
        )
        .await
        .map_err(|e| wrap(e, &limit_p))?;
        let mut stats = StatsTrack::default();
        stats.set("count", 0);
        stats.set("bytes", 0);
        zk.create(
            &stat_p,
            stats.render().as_bytes(),
            &acl,
            CreateMode::Persistent,
        )
        .await
        .map_err(|e| wrap(e, &stat_p))?;
        let (l, _) = zk
            .get_data(&limit_p, false)
            .await
            .map_err(|e| wrap(e, &limit_p))?;
        let (s, _) = zk
            .get_data(&stat_p, false)
            .await
            .map_err(|e| wrap(e, &stat_p))?;
        check_quota(&StatsTrack::parse(&l), &StatsTrack::parse(&s));
    } else {
        let (l, _) = zk
            .get_data(&limit_p, false)
            .await
            .map_err(|e| wrap(e, &limit_p))?;
        let mut limits = StatsTrack::parse(&l);
        for key in ["count", "bytes", "countHardLimit", "byteHardLimit"] {
            if quota.get(key) > -1 {
                limits.set(key, quota.get(key));
            }
        }
        let (s, _) = zk
            .get_data(&stat_p, false)
            .await
            .map_err(|e| wrap(e, &stat_p))?;
        check_quota(&limits, &StatsTrack::parse(&s));
        zk.set_data(&limit_p, limits.render().as_bytes(), -1)
            .await
            .map_err(|e| wrap(e, &limit_p))?;
    }
    Ok(())
}

/// Warnings (on stdout, as ZooKeeper prints them) for a limit already exceeded.
fn check_quota(q: &StatsTrack, s: &StatsTrack) {
    let over =
        |soft: i64, hard: i64, used: i64| (soft > -1 && soft < used) || (hard > -1 && hard < used);
    if over(q.get("count"), q.get("countHardLimit"), s.get("count")) {
        out(&format!(
            "[Warning]: the count quota you create is less than the existing count:{}\n",
            s.get("count")
        ));
    }
    if over(q.get("bytes"), q.get("byteHardLimit"), s.get("bytes")) {
        out(&format!(
            "[Warning]: the bytes quota you create is less than the existing bytes:{}\n",
            s.get("bytes")
        ));
    }
}

/// A quota already set below `path` forbids one on `path`. Walked in visitSubTreeDFS
/// order, so the same offender is named.
async fn check_child_quota(ctx: &Ctx<'_>, path: &str) -> Result<(), CliError> {
    let real = quota_path(path);
    check_path(&real)?;
    let zk = ctx.zk();
    match zk.get_data(&real, false).await {
        Ok(_) => {}
        Err(Error::Keeper(ErrorCode::NoNode)) => return Ok(()),
        Err(e) => return Err(wrap(e, &real)),
    }
    let own = quota_path(path);
    let check = |qp: &str, kids: &[String]| -> Result<(), CliError> {
        if qp != own && kids.iter().any(|k| k == LIMIT_NODE) {
            return Err(CliError::new(format!(
                "{path} has a child {} which has a quota",
                &qp[QUOTA_ZOOKEEPER.len()..]
            )));
        }
        Ok(())
    };
    // Every visited node's children are listed again by the callback, as in the CLI.
    let children = |p: String| async move {
        match zk.get_children(&p, false).await {
            Ok(k) => Ok(k),
            Err(Error::Keeper(ErrorCode::NoNode)) => Ok(Vec::new()),
            Err(e) => Err(wrap(e, &p)),
        }
    };
    check(&real, &children(real.clone()).await?)?;
    let mut stack = vec![real.clone()];
    while let Some(node) = stack.pop() {
        let mut kids = children(node.clone()).await?;
        kids.sort();
        let base = if node == "/" {
            String::new()
        } else {
            node.clone()
        };
        let paths: Vec<String> = kids.iter().map(|k| format!("{base}/{k}")).collect();
        for c in &paths {
            check(c, &children(c.clone()).await?)?;
        }
        stack.extend(paths.into_iter().rev());
    }
    Ok(())
}

async fn check_parent_quota(ctx: &Ctx<'_>, path: &str) -> Result<(), CliError> {
    let parts: Vec<&str> = path.split('/').collect();
    let mut qpath = QUOTA_ZOOKEEPER.to_string();
    for part in parts.iter().take(parts.len().saturating_sub(1)).skip(1) {
        qpath.push('/');
        qpath.push_str(part);
        let kids = match ctx.zk().get_children(&qpath, false).await {
            Ok(k) => k,
            Err(Error::Keeper(ErrorCode::NoNode)) => return Ok(()),
            Err(e) => return Err(wrap(e, &qpath)),
        };
        if kids.is_empty() {
            return Ok(());
        }
        if qpath != quota_path(path) && kids.iter().any(|k| k == LIMIT_NODE) {
            return Err(CliError::new(format!(
                "{path} has a parent {} which has a quota",
                &qpath[QUOTA_ZOOKEEPER.len()..]
            )));
        }
    }
    Ok(())
}

pub async fn listquota(ctx: &mut Ctx<'_>, p: &Parsed) -> Result<(), CliError> {
    let path = &p.args[1];
    let limit = limit_path(path);
    err_line(&format!("absolute path is {limit}"));
    let mut found = Vec::new();
    for np in [limit.clone(), stat_path(path)] {
        check_path(&np)?;
        match ctx.zk().get_data(&np, false).await {
            Ok((d, _)) => found.push(StatsTrack::parse(&d).render()),
            // Reported on stderr; the command still succeeds, as in zkCli.sh.
            Err(Error::Keeper(ErrorCode::NoNode)) => {
                err_line(&format!("quota for {path} does not exist."));
                return Ok(());
            }
            Err(e) => return Err(wrap(e, &np)),
        }
    }
    out(&format!(
        "Output quota for {path} {}\nOutput stat for {path} {}\n",
        found[0], found[1]
    ));
    Ok(())
}

pub async fn delquota(ctx: &mut Ctx<'_>, p: &Parsed) -> Result<(), CliError> {
    let path = &p.args[1];
    let flag = check_group(p, &['n', 'b', 'N', 'B'])?;
    let parent = quota_path(path);
    let limit = limit_path(path);
    check_path(&limit)?;
    let zk = ctx.zk();
    let no_quota = || {
        err_line(&format!("quota for {path} does not exist."));
        Ok(())
    };
    if zk
        .exists(&limit, false)
        .await
        .map_err(|e| wrap(e, &limit))?
        .is_none()
    {
        out(&format!("Quota does not exist for {path}\n"));
        return Ok(());
    }
    let data = match zk.get_data(&limit, false).await {
        Ok((d, _)) => d,
        Err(Error::Keeper(ErrorCode::NoNode)) => return no_quota(),
        Err(e) => return Err(wrap(e, &limit)),
    };
    let mut st = StatsTrack::parse(&data);
    match flag {
        None => {
            let kids = match zk.get_children(&parent, false).await {
                Ok(k) => k,
                Err(Error::Keeper(ErrorCode::NoNode)) => return no_quota(),
                Err(e) => return Err(wrap(e, &parent)),
            };
            for k in kids {
                let c = format!("{parent}/{k}");
                match zk.delete(&c, -1).await {
                    Ok(()) => {}
                    Err(Error::Keeper(ErrorCode::NoNode)) => return no_quota(),
                    Err(e) => return Err(wrap(e, &c)),
                }
            }
            // Remove now-empty quota directories up to /zookeeper/quota.
            let mut dir = parent.clone();
            while dir != QUOTA_ZOOKEEPER {
                let kids = match zk.get_children(&dir, false).await {
                    Ok(k) => k,
                    Err(Error::Keeper(ErrorCode::NoNode)) => return no_quota(),
                    Err(e) => return Err(wrap(e, &dir)),
                };
                if !kids.is_empty() {
                    break;
                }
                match zk.delete(&dir, -1).await {
                    Ok(()) => {}
                    Err(Error::Keeper(ErrorCode::NoNode)) => return no_quota(),
                    Err(e) => return Err(wrap(e, &dir)),
                }
                dir.truncate(dir.rfind('/').unwrap_or(0));
            }
        }
        Some(c) => {
            let key = match c {
                'n' => "count",
                'b' => "bytes",
                'N' => "countHardLimit",
                _ => "byteHardLimit",
            };
            st.set(key, -1);
            match zk.set_data(&limit, st.render().as_bytes(), -1).await {
                Ok(_) => {}
                Err(Error::Keeper(ErrorCode::NoNode)) => return no_quota(),
                Err(e) => return Err(wrap(e, &limit)),
            }
        }
    }
    Ok(())
}

/// setquota's option group is required: none given is this parse error.
pub fn setquota_group(p: &Parsed) -> Result<(), CliError> {
    if check_group(p, &['n', 'b', 'N', 'B'])?.is_none() {
        return Err(CliError::new(
            "org.apache.commons.cli.MissingOptionException: Missing required option: [-n num soft quota, -b bytes soft quota, -N num hard quota, -B bytes hard quota]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_track_text() {
        let mut q = StatsTrack::default();
        q.set("count", 1);
        q.set("bytes", -1);
        q.set("countHardLimit", 10);
        q.set("byteHardLimit", -1);
        let s = q.render();
        assert_eq!(s, "count=1,bytes=-1=;byteHardLimit=-1;countHardLimit=10");
        assert_eq!(StatsTrack::parse(s.as_bytes()).render(), s);
        assert_eq!(
            StatsTrack::parse(b"count=3,bytes=5").render(),
            "count=3,bytes=5"
        );
    }
}
