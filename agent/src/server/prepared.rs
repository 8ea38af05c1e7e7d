//! Prepared queries: finding the query a name or ID means, rendering a template for that name,
//! and selecting the healthy instances it asks for. Pure functions of the state, shared by the
//! HTTP API (`/v1/query/:id/execute`, `explain`) and DNS (`<name>.query.consul`).
//!
//! Resolution and rendering happen at read time, on the server that answers, against one state
//! view: a template's definition is stored as written, so changing it takes effect for every name
//! at once, as in Consul.

use cairn_catalog::State;
use cairn_catalog::model::{HealthStatus, PreparedQuery};
use cairn_catalog::store::CheckServiceNode;

/// The only template type Consul defines.
///
/// The empty type is a plain query; any other type is refused when the query is written.
pub const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// Finds the query `key` names: by ID, else by exact name, else the template with the longest
/// name that prefixes `key` (an unnamed template matches everything). Templates come back
/// rendered for `key`.
///
/// Exact IDs and names win over templates, so a plain query named `web` is not shadowed by a
/// template whose prefix also matches `web`; among templates the longest prefix is the most
/// specific, as in Consul.
pub fn resolve(st: &State, key: &str) -> Option<PreparedQuery> {
    find(st, key, false)
}

/// [`resolve`] for a name that arrived lowercased (DNS): an exact match first, then IDs, names
/// and template prefixes compared case-insensitively.
///
/// DNS names are case-insensitive and resolvers may lowercase them, so a query created as `Web`
/// must still answer `web.query.consul`; an exact match goes first so that two queries differing
/// only in case still resolve as written.
pub fn resolve_folded(st: &State, key: &str) -> Option<PreparedQuery> {
    find(st, key, false).or_else(|| find(st, key, true))
}

fn find(st: &State, key: &str, fold: bool) -> Option<PreparedQuery> {
    let same = |a: &str, b: &str| {
        if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let (_, all) = st.queries();
    if let Some(q) = all
        .iter()
        .find(|q| same(&q.id, key) || (!q.name.is_empty() && same(&q.name, key)))
    {
        return Some(render(q, key));
    }
    // The boundary check keeps slicing `key` from panicking when a template's prefix ends inside a
    // multi-byte character of the key.
    let prefixed = |q: &PreparedQuery| {
        key.len() >= q.name.len()
            && key.is_char_boundary(q.name.len())
            && same(&key[..q.name.len()], &q.name)
    };
    all.iter()
        .filter(|q| q.template.kind == NAME_PREFIX_MATCH && prefixed(q))
        .max_by_key(|q| q.name.len())
        // Rendered against the name as the template spells its prefix.
        .map(|q| render(q, &format!("{}{}", q.name, &key[q.name.len()..])))
}

/// A template with its variables filled in for `name` (other queries as they are):
/// `${name.full}`, `${name.prefix}`, `${name.suffix}`, `${match(N)}` (a capture of the
/// template's regexp on the full name) and `${agent.segment}` (empty).
pub fn render(q: &PreparedQuery, name: &str) -> PreparedQuery {
    if q.template.kind != NAME_PREFIX_MATCH {
        return q.clone();
    }
    // Capture 0 is the whole match, as in Go's regexp. An invalid regexp cannot be stored (it is
    // refused when written); should one be found anyway, it captures nothing.
    let captures: Vec<String> = regex::Regex::new(&q.template.regexp)
        .ok()
        .filter(|_| !q.template.regexp.is_empty())
        .and_then(|re| {
            re.captures(name).map(|c| {
                c.iter()
                    .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                    .collect()
            })
        })
        .unwrap_or_default();
    let suffix = name.strip_prefix(q.name.as_str()).unwrap_or_default();
    let fill = |text: &str| -> String {
        let mut out = text
            .replace("${name.full}", name)
            .replace("${name.prefix}", &q.name)
            .replace("${name.suffix}", suffix)
            // Network segments are an Enterprise feature: the variable renders empty, as on Consul
            // CE.
            .replace("${agent.segment}", "");
        for (i, c) in captures.iter().enumerate() {
            out = out.replace(&format!("${{match({i})}}"), c);
        }
        // Captures the regexp does not have render empty, as in Consul.
        while let Some(start) = out.find("${match(") {
            match out[start..].find(")}") {
                Some(end) => out.replace_range(start..start + end + 2, ""),
                None => break,
            }
        }
        out
    };
    let mut r = q.clone();
    r.service.service = fill(&q.service.service);
    r.service.tags = q
        .service
        .tags
        .iter()
        .map(|t| fill(t))
        // `RemoveEmptyTags`: a tag that rendered empty (an unmatched capture) would otherwise
        // require instances to carry the empty tag.
        .filter(|t| !(q.template.remove_empty_tags && t.is_empty()))
        .collect();
    r.service.node_meta = q
        .service
        .node_meta
        .iter()
        .map(|(k, v)| (k.clone(), fill(v)))
        .collect();
    r.service.service_meta = q
        .service
        .service_meta
        .iter()
        .map(|(k, v)| (k.clone(), fill(v)))
        .collect();
    r
}

/// The instances a (rendered) query selects, shuffled, at most `limit` (0: all), with the
/// index of the service they belong to. Healthy means no critical check, and no warning either
/// with `OnlyPassing`; checks in `IgnoreCheckIDs` do not count. Tags are required, `!tag`
/// excluded (case-insensitively); node and service meta must match.
///
/// Shuffled so that callers which take the first instance (DNS clients, most libraries) spread
/// their load; `Near` sorting by coordinates is not applied.
pub fn select(st: &State, q: &PreparedQuery, limit: usize) -> (u64, Vec<CheckServiceNode>) {
    let svc = &q.service;
    let (idx, all) = st.check_service_nodes(&svc.service);
    let mut chosen: Vec<CheckServiceNode> = all
        .into_iter()
        .filter(|c| {
            svc.tags.iter().all(|t| {
                let has = |want: &str| c.service.tags.iter().any(|h| h.eq_ignore_ascii_case(want));
                match t.strip_prefix('!') {
                    Some(excluded) => !has(excluded),
                    None => has(t),
                }
            })
        })
        .filter(|c| {
            svc.node_meta
                .iter()
                .all(|(k, v)| c.node.meta.get(k) == Some(v))
                && svc
                    .service_meta
                    .iter()
                    .all(|(k, v)| c.service.meta.get(k) == Some(v))
        })
        .filter(|c| {
            HealthStatus::worst(
                c.checks
                    .iter()
                    // `IgnoreCheckIDs` lets an operator keep instances whose, say, maintenance
                    // check is critical.
                    .filter(|k| !svc.ignore_check_ids.contains(&k.check_id))
                    .map(|k| k.status),
            )
            .serves(svc.only_passing)
        })
        .collect();
    crate::random::shuffle(&mut chosen);
    if limit > 0 {
        chosen.truncate(limit);
    }
    (idx, chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_catalog::model::{QueryService, QueryTemplate};

    fn template(name: &str, regexp: &str, service: &str, tags: &[&str]) -> PreparedQuery {
        PreparedQuery {
            id: format!("id-{name}"),
            name: name.into(),
            template: QueryTemplate {
                kind: NAME_PREFIX_MATCH.into(),
                regexp: regexp.into(),
                remove_empty_tags: true,
            },
            service: QueryService {
                service: service.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..QueryService::default()
            },
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn templates_render_name_parts_and_regexp_captures() {
        let q = template(
            "geo-db-",
            "^geo-db-(.*?)-([^-]+?)$",
            "mysql-${match(1)}",
            &["${match(2)}", "${match(7)}", "v-${name.suffix}"],
        );
        let r = render(&q, "geo-db-customer-primary");
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(r.service.tags, vec!["primary", "v-customer-primary"]);
        let plain = template("", "", "${name.full}", &[]);
        assert_eq!(render(&plain, "redis").service.service, "redis");
    }

    #[test]
    fn a_non_template_is_left_as_it_is() {
        let mut q = template("web", "", "${name.full}", &[]);
        q.template.kind = String::new();
        assert_eq!(render(&q, "web").service.service, "${name.full}");
    }
}
