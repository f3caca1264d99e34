//! The chats, most recent activity first: the friend's name (green while online), the last
//! message, and a blue dot with the count of unread messages.
use yew::prelude::*;

use super::AppContext;
use crate::{state::Action, time};

#[function_component(ChatList)]
pub fn chat_list() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let state = &ctx.state;
    if state.chats_loaded && state.chats.is_empty() {
        return html! {
            <div class="empty" id="no-chats">
                <p><strong>{ "No chats yet." }</strong></p>
                <p class="muted">{ "Type a friend's email above to start one." }</p>
            </div>
        };
    }
    let me = state.me.as_ref().map(|u| u.id);
    html! {
        <ul class="chat-list" role="list">
            { for state.chats.iter().map(|chat| {
                let id = chat.id;
                let onclick = {
                    let ctx = ctx.clone();
                    Callback::from(move |_| ctx.state.dispatch(Action::Select(Some(id))))
                };
                let selected = state.selected == Some(id);
                let preview = chat.last_message.as_ref().map(|m| {
                    let mine = Some(m.sender_id) == me;
                    format!("{}{}", if mine { "You: " } else { "" }, m.body.lines().next().unwrap_or_default())
                });
                let when = chat.last_message.as_ref().map(|m| time::short(&m.created_at)).unwrap_or_default();
                let status = if chat.friend.online { "online" } else { "offline" };
                let unread = chat.unread_count;
                let label = format!("{}, {status}{}{}", chat.friend.display_name,
                    if chat.blocked { ", blocked" } else { "" },
                    if unread > 0 { format!(", {unread} unread") } else { String::new() });
                html! {
                    <li key={id}>
                        <button type="button" class={classes!("chat-item", selected.then_some("selected"), (unread > 0).then_some("unread"), chat.blocked.then_some("blocked"))}
                            data-chat-id={id.to_string()} data-friend={chat.friend.email.clone()} aria-current={selected.then_some("true")} aria-label={label} {onclick}>
                            <span class={classes!("name", chat.friend.online.then_some("online"))}>
                                { chat.friend.display_name.clone() }
                                if chat.blocked { <span class="blocked-badge">{ "Blocked" }</span> }
                            </span>
                            <span class="when">{ when }</span>
                            <span class="preview">{ preview.unwrap_or_else(|| chat.friend.email.clone()) }</span>
                            if unread > 0 {
                                <span class="dot" aria-hidden="true">{ if unread > 99 { "99+".to_string() } else { unread.to_string() } }</span>
                            }
                        </button>
                    </li>
                }
            }) }
        </ul>
    }
}
