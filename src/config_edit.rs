//! Edits `config.yaml` as text, so that `mdl add` and `mdl remove` keep the
//! user's comments, order and formatting (a YAML round-trip through serde would
//! drop every comment). Each edit is re-parsed by the caller before it is written.

/// Where the `models.<key>:` list is and how it is written.
struct ListAt {
    /// Index of the line with `<key>:`.
    key_line: usize,
    /// `[a, b]` on the key line.
    flow: bool,
    /// Block items: the line range `key_line+1 .. end`.
    end: usize,
    /// Indentation of block items (`    - `), when there are any.
    item_indent: Option<usize>,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Finds `key:` directly under the top-level `models:` mapping.
fn find_list(lines: &[String], key: &str) -> Option<ListAt> {
    let models = lines
        .iter()
        .position(|l| l.trim_end().starts_with("models:") && indent_of(l) == 0)?;
    let child_indent = lines[models + 1..]
        .iter()
        .find(|l| !is_blank_or_comment(l))
        .map(|l| indent_of(l))?;
    if child_indent == 0 {
        return None;
    }
    let mut i = models + 1;
    while i < lines.len() {
        let l = &lines[i];
        if !is_blank_or_comment(l) && indent_of(l) == 0 {
            return None; // left the models mapping
        }
        if indent_of(l) == child_indent && l.trim_start().starts_with(&format!("{key}:")) {
            let after = l.trim_start()[key.len() + 1..].trim();
            let flow = after.starts_with('[');
            let mut end = i + 1;
            let mut item_indent = None;
            if !flow {
                while end < lines.len() {
                    let e = &lines[end];
                    if is_blank_or_comment(e) {
                        end += 1;
                        continue;
                    }
                    let ind = indent_of(e);
                    let item = e.trim_start().starts_with("- ") || e.trim() == "-";
                    if ind > child_indent || (ind == child_indent && item) {
                        if item && item_indent.is_none() {
                            item_indent = Some(ind);
                        }
                        end += 1;
                    } else {
                        break;
                    }
                }
                // Do not swallow trailing blank/comment lines that belong to what follows.
                while end > i + 1 && is_blank_or_comment(&lines[end - 1]) {
                    end -= 1;
                }
            }
            return Some(ListAt {
                key_line: i,
                flow,
                end,
                item_indent,
            });
        }
        i += 1;
    }
    None
}

fn quote(item: &str) -> String {
    if item.chars().any(|c| {
        matches!(
            c,
            ':' | '#' | '[' | ']' | '{' | '}' | ',' | '@' | '*' | '&' | '!' | '|' | '>' | '\'' | '"' | '%'
        )
    }) {
        format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        item.to_string()
    }
}

/// Appends `item` to the `models.<key>` list, creating the list (and `models:`)
/// if needed.
pub fn add_to_list(raw: &str, key: &str, item: &str) -> String {
    let mut lines: Vec<String> = raw.lines().map(str::to_string).collect();
    let item_text = quote(item);
    match find_list(&lines, key) {
        Some(at) if at.flow => {
            let line = &lines[at.key_line];
            let close = line.rfind(']').unwrap_or(line.len());
            let inside = line[line.find('[').map_or(0, |o| o + 1)..close].trim();
            let sep = if inside.is_empty() { "" } else { ", " };
            lines[at.key_line] = format!("{}{sep}{item_text}{}", &line[..close].trim_end(), &line[close..]);
        }
        Some(at) => {
            let indent = at.item_indent.unwrap_or(indent_of(&lines[at.key_line]) + 2);
            lines.insert(at.end, format!("{}- {item_text}", " ".repeat(indent)));
        }
        None => {
            match lines
                .iter()
                .position(|l| l.trim_end().starts_with("models:") && indent_of(l) == 0)
            {
                Some(models) => {
                    let child = lines[models + 1..]
                        .iter()
                        .find(|l| !is_blank_or_comment(l))
                        .map(|l| indent_of(l))
                        .filter(|i| *i > 0)
                        .unwrap_or(2);
                    lines.insert(models + 1, format!("{}{key}:", " ".repeat(child)));
                    lines.insert(models + 2, format!("{}- {item_text}", " ".repeat(child + 2)));
                }
                None => {
                    lines.push("models:".into());
                    lines.push(format!("  {key}:"));
                    lines.push(format!("    - {item_text}"));
                }
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Removes the entry whose id (string form, or `id:` of the table form) is
/// `id` from `models.<key>`. `None` if it is not there.
pub fn remove_from_list(raw: &str, key: &str, id: &str) -> Option<String> {
    let mut lines: Vec<String> = raw.lines().map(str::to_string).collect();
    let at = find_list(&lines, key)?;
    let unquote = |s: &str| s.trim().trim_matches('"').trim_matches('\'').to_string();
    if at.flow {
        let line = lines[at.key_line].clone();
        let open = line.find('[')?;
        let close = line.rfind(']')?;
        let items: Vec<&str> = line[open + 1..close].split(',').collect();
        let kept: Vec<&str> = items.iter().copied().filter(|i| unquote(i) != id).collect();
        if kept.len() == items.len() {
            return None;
        }
        let joined: Vec<String> = kept
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        lines[at.key_line] = format!("{}{}{}", &line[..open + 1], joined.join(", "), &line[close..]);
    } else {
        let mut i = at.key_line + 1;
        let mut found = None;
        while i < at.end {
            let t = lines[i].trim_start();
            if let Some(rest) = t.strip_prefix("- ") {
                let value = rest.split(" #").next().unwrap_or(rest);
                let matches = unquote(value) == id
                    || value
                        .trim_start()
                        .strip_prefix("id:")
                        .is_some_and(|v| unquote(v.split(" #").next().unwrap_or(v)) == id);
                if matches {
                    found = Some(i);
                    break;
                }
            }
            i += 1;
        }
        let start = match found {
            Some(s) => s,
            None => {
                // Table form with `id:` on a later line of the item.
                let line = (at.key_line + 1..at.end).find(|&j| {
                    let t = lines[j].trim_start();
                    t.strip_prefix("id:")
                        .is_some_and(|v| unquote(v.split(" #").next().unwrap_or(v)) == id)
                })?;
                (at.key_line + 1..=line)
                    .rev()
                    .find(|&j| lines[j].trim_start().starts_with("- "))?
            }
        };
        let item_indent = indent_of(&lines[start]);
        let mut end = start + 1;
        while end < at.end
            && (is_blank_or_comment(&lines[end]) || indent_of(&lines[end]) > item_indent)
            && !lines[end].trim_start().starts_with("- ")
        {
            end += 1;
        }
        while end > start + 1 && is_blank_or_comment(&lines[end - 1]) {
            end -= 1;
        }
        lines.drain(start..end);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "# my models\nmodels:\n  require:\n    - acme/a   # the first\n    - id: url:https://x.org/b.pt\n      name: b   # named\n    - acme/c\n  # download settings\n  download:\n    cache_dir: models/\n";

    #[test]
    fn add_keeps_comments_block_and_flow() {
        let out = add_to_list(BLOCK, "require", "torchvision:resnet18");
        assert!(
            out.contains("    - acme/c\n    - \"torchvision:resnet18\"\n  # download settings"),
            "{out}"
        );
        assert!(out.contains("# my models") && out.contains("# the first") && out.contains("# named"));
        let flow = add_to_list("models:\n  require: [acme/a]  # x\n", "require", "acme/b");
        assert_eq!(flow, "models:\n  require: [acme/a, acme/b]  # x\n");
        assert_eq!(
            add_to_list("device: cpu\n", "require", "acme/a"),
            "device: cpu\nmodels:\n  require:\n    - acme/a\n"
        );
        assert_eq!(
            add_to_list("models:\n  device: cpu\n", "presets", "vision"),
            "models:\n  presets:\n    - vision\n  device: cpu\n"
        );
    }

    #[test]
    fn remove_string_and_table_entries() {
        let out = remove_from_list(BLOCK, "require", "acme/a").unwrap();
        assert!(
            !out.contains("acme/a") && out.contains("# my models") && out.contains("acme/c"),
            "{out}"
        );
        let out = remove_from_list(BLOCK, "require", "url:https://x.org/b.pt").unwrap();
        assert!(
            !out.contains("b.pt")
                && !out.contains("name: b")
                && out.contains("    - acme/a   # the first\n    - acme/c"),
            "{out}"
        );
        assert_eq!(
            remove_from_list("models:\n  require: [acme/a, \"acme/b\"]\n", "require", "acme/b").unwrap(),
            "models:\n  require: [acme/a]\n"
        );
        assert!(remove_from_list(BLOCK, "require", "acme/zzz").is_none());
    }
}
