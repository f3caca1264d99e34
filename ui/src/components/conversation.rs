//! The open chat: the friend's name and status, the history (older pages load when you scroll
//! up), your pending messages, and the composer.
use std::cell::Cell;

use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlElement;
use yew::prelude::*;

use super::{composer::Composer, AppContext};
use crate::{state::Action, time};

#[function_component(Conversation)]
pub fn conversation() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let list_ref = use_node_ref();
    // scrollHeight before an older page was added, to keep the view where it was.
    let height_before_older = use_mut_ref(|| Cell::new(None::<i32>));
    let state = &ctx.state;
    let selected = state.selected;
    let history = selected.and_then(|id| state.history(id)).cloned().unwrap_or_default();
    let newest = history.messages.keys().next_back().copied();
    let oldest = history.oldest_seq();
    let pending_count = selected.map_or(0, |id| state.pending_in(id).count());

    // Opening a chat fetches its newest page once, and again if its history was dropped (a
    // resync).
    {
        let ctx = ctx.clone();
        use_effect_with((selected, history.loaded), move |(selected, loaded)| {
            if let (Some(chat_id), false) = (*selected, *loaded) {
                spawn_local(async move {
                    if let Ok(page) = ctx.backend.history(chat_id, None).await {
                        ctx.state.dispatch(Action::HistoryLoaded { chat_id, page });
                    }
                });
            }
        });
    }
    // New messages (and our own pending ones) scroll into view.
    {
        let list_ref = list_ref.clone();
        use_effect_with((selected, newest, pending_count), move |_| {
            if let Some(list) = list_ref.cast::<HtmlElement>() {
                list.set_scroll_top(list.scroll_height());
            }
        });
    }
    // An older page keeps what you were reading in place.
    {
        let list_ref = list_ref.clone();
        let height_before_older = height_before_older.clone();
        use_effect_with(oldest, move |_| {
            if let (Some(list), Some(before)) = (list_ref.cast::<HtmlElement>(), height_before_older.borrow().take()) {
                list.set_scroll_top(list.scroll_height() - before);
            }
        });
    }

    let Some(chat_id) = selected else {
        return html! {
            <section class="conversation placeholder" aria-label="Conversation">
                <p class="muted">{ "Pick a chat on the left, or start a new one." }</p>
            </section>
        };
    };
    let Some(chat) = state.chat(chat_id).cloned() else {
        return html! {};
    };

    let load_older = {
        let ctx = ctx.clone();
        let list_ref = list_ref.clone();
        let height_before_older = height_before_older.clone();
        let can_load = history.loaded && history.more && !history.loading_older;
        Callback::from(move |_: ()| {
            let Some(before) = oldest.filter(|_| can_load) else {
                return;
            };
            if let Some(list) = list_ref.cast::<HtmlElement>() {
                height_before_older.borrow().set(Some(list.scroll_height()));
            }
            ctx.state.dispatch(Action::LoadingOlder(chat_id));
            let ctx = ctx.clone();
            spawn_local(async move {
                if let Ok(page) = ctx.backend.history(chat_id, Some(before)).await {
                    ctx.state.dispatch(Action::HistoryLoaded { chat_id, page });
                }
            });
        })
    };
    let onscroll = {
        let list_ref = list_ref.clone();
        let load_older = load_older.clone();
        Callback::from(move |_: Event| {
            if list_ref.cast::<HtmlElement>().is_some_and(|list| list.scroll_top() < 60) {
                load_older.emit(());
            }
        })
    };
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Select(None)))
    };

    let me = state.me.as_ref().map(|u| u.id);
    let friend = chat.friend.clone();
    let typing = state.typing.get(&chat_id).is_some_and(|(user, _)| *user == friend.id);
    let presence = if typing {
        "typing…".to_string()
    } else if friend.online {
        "online".to_string()
    } else if let Some(seen) = &friend.last_seen {
        format!("last seen {}", time::long(seen))
    } else {
        "offline".to_string()
    };
    let status = if chat.blocked { format!("Blocked · {presence}") } else { presence };
    let my_last_seen_seq = history.messages.values().rev().find(|m| Some(m.sender_id) == me).map(|m| m.seq);
    let pending: Vec<_> = state.pending_in(chat_id).cloned().collect();

    html! {
        <section class="conversation" aria-label={format!("Conversation with {}", friend.display_name)}>
            <header class="conversation-header">
                <button type="button" class="back" onclick={back} aria-label="Back to chats">{ "‹" }</button>
                <div>
                    <h2 class={classes!("friend-name", friend.online.then_some("online"))}>{ friend.display_name.clone() }</h2>
                    <p class="status" aria-live="polite">{ status }</p>
                </div>
                if !friend.deleted {
                    <BlockControl user_id={friend.id} name={friend.display_name.clone()} blocked={chat.blocked} />
                }
            </header>
            <ol class="messages" ref={list_ref} {onscroll} role="log" aria-live="polite" aria-label="Messages">
                if history.more {
                    <li class="older">
                        <button type="button" class="link" onclick={load_older.reform(|_| ())} disabled={history.loading_older}>
                            { if history.loading_older { "Loading…" } else { "Load older messages" } }
                        </button>
                    </li>
                } else if history.loaded {
                    <li class="beginning muted">{ format!("This is the beginning of your chat with {}.", friend.display_name) }</li>
                }
                { for history.messages.values().map(|m| {
                    let mine = Some(m.sender_id) == me;
                    let seen = mine && Some(m.seq) == my_last_seen_seq && chat.friend_read_up_to >= m.seq;
                    html! {
                        <li key={m.id} class={classes!("message", if mine { "mine" } else { "theirs" })} data-seq={m.seq.to_string()}>
                            <p class="body">{ m.body.clone() }</p>
                            <p class="meta">
                                <time datetime={m.created_at.clone()} title={time::long(&m.created_at)}>{ time::short(&m.created_at) }</time>
                                if seen { <span class="seen">{ " · Seen" }</span> }
                            </p>
                        </li>
                    }
                }) }
                { for pending.iter().map(|p| html! {
                    <li key={p.client_id.clone()} class={classes!("message", "mine", "pending", p.failed.is_some().then_some("failed"))}>
                        <p class="body">{ p.body.clone() }</p>
                        <p class="meta">{ match &p.failed {
                            Some(reason) => format!("Not sent: {reason}"),
                            None => "Sending…".to_string(),
                        } }</p>
                    </li>
                }) }
            </ol>
            if friend.deleted {
                <p class="blocked-note" id="deleted-note">
                    { "This person deleted their account. The chat stays for you to read; nobody can write to it." }
                </p>
            } else if chat.blocked {
                <p class="blocked-note" id="blocked-note">
                    { format!("You blocked {}. Unblock them to write to each other again.", friend.display_name) }
                </p>
            } else {
                <Composer {chat_id} />
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct BlockControlProps {
    user_id: i64,
    name: AttrValue,
    blocked: bool,
}

/// "Block" (or "Unblock") in the conversation's header, asking before it acts.
#[function_component(BlockControl)]
fn block_control(props: &BlockControlProps) -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let confirming = use_state(|| false);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    // Another chat, or the other state: start over.
    {
        let (confirming, error) = (confirming.clone(), error.clone());
        use_effect_with((props.user_id, props.blocked), move |_| {
            confirming.set(false);
            error.set(None);
        });
    }
    let ask = {
        let confirming = confirming.clone();
        Callback::from(move |_| confirming.set(true))
    };
    let cancel = {
        let confirming = confirming.clone();
        Callback::from(move |_| confirming.set(false))
    };
    let confirm = {
        let (ctx, error, busy) = (ctx.clone(), error.clone(), busy.clone());
        let (user_id, blocking) = (props.user_id, !props.blocked);
        Callback::from(move |_| {
            if *busy {
                return;
            }
            busy.set(true);
            let (ctx, error, busy) = (ctx.clone(), error.clone(), busy.clone());
            spawn_local(async move {
                let result =
                    if blocking { ctx.backend.block(user_id).await } else { ctx.backend.unblock(user_id).await };
                busy.set(false);
                match result {
                    Ok(()) => ctx.state.dispatch(Action::BlockChanged { user_id, blocked: blocking }),
                    Err(err) => error.set(Some(err.message)),
                }
            });
        })
    };
    let (verb, id, question) = if props.blocked {
        (
            "Unblock",
            "unblock-friend",
            format!(
                "Unblock {}? You will be able to write to each other, and they will see when you are online.",
                props.name
            ),
        )
    } else {
        (
            "Block",
            "block-friend",
            format!(
                "Block {}? They will not be able to write to you or see when you are online. They are not told.",
                props.name
            ),
        )
    };
    html! {
        <div class="block-control">
            if *confirming {
                <div class="confirm" role="alertdialog" aria-label={format!("{verb} {}", props.name)}>
                    <p>{ question }</p>
                    if let Some(message) = &*error { <p class="form-error" role="alert">{ message.clone() }</p> }
                    <button type="button" id="confirm-block" class="danger" onclick={confirm} disabled={*busy}>{ verb }</button>
                    <button type="button" id="cancel-block" class="logout" onclick={cancel}>{ "Cancel" }</button>
                </div>
            } else {
                <button type="button" id={id} class="logout" onclick={ask}>{ verb }</button>
            }
        </div>
    }
}
