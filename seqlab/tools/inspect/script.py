"""The CSS and JavaScript ``seqlab inspect``'s page carries inline (no network, no CDN).

The first script records every error (``window.onerror``, ``console.error``, unhandled
rejections) into ``#errors``, so a headless browser's ``--dump-dom`` shows them. The page's
script draws the per-character panels from the JSON in ``#data``; with ``#selftest`` in the
URL it then picks another unit, checks that the text was re-shaded, and writes what it found
as JSON into ``#selftest`` (tests/test_inspect_browser.py reads it).
"""

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:8px 18px;
color:#222}
h1{font-size:20px;margin:8px 0}h2{font-size:17px;border-bottom:1px solid #ddd;margin-top:28px}
h3{font-size:13px;margin:12px 0 4px}nav a{margin-right:12px}.meta,.note{color:#555}
.note{background:#fff6d6;padding:3px 8px}.na{color:#777;font-style:italic}
.text{font:12.5px/1.55 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;
word-break:break-all;border:1px solid #e3e3e3;padding:6px;max-height:340px;overflow:auto}
.text.small{max-height:130px}.text span{cursor:default}
.info{font:12.5px ui-monospace,monospace;background:#f4f6f8;padding:4px 8px;min-height:1.5em;
position:sticky;top:0;z-index:2}
table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{border-bottom:1px solid #eee;
padding:2px 8px;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
button.unit{font:12px ui-monospace,monospace;margin:1px;cursor:pointer}
.samples{max-height:460px;overflow:auto;border:1px solid #e3e3e3}
.sample{padding:4px 8px;border-bottom:1px solid #eee}.sample pre{margin:2px 0;
white-space:pre-wrap;font-size:12px}.sample-head{font-weight:600;font-size:12px;color:#444}
.svgs{display:flex;flex-wrap:wrap;gap:12px}.svgs circle{cursor:pointer}
.legend span{margin-right:10px;font-size:12px}.example img{max-width:100%}
#errors{color:#b00;background:#fee;padding:4px}
"""

ERRORS_JS = """
window.__errors=[];
function __err(m){window.__errors.push(String(m));var e=document.getElementById('errors');
if(e){e.textContent=window.__errors.join('\\n');e.hidden=false;}}
window.onerror=function(m,s,l){__err(m+' (line '+l+')');};
window.addEventListener('unhandledrejection',function(e){__err('unhandled: '+e.reason);});
(function(){var o=console.error;console.error=function(){
__err(Array.prototype.join.call(arguments,' '));o.apply(console,arguments);};})();
"""

PAGE_JS = r"""
(function(){
var D=JSON.parse(document.getElementById('data').textContent);
function $(id){return document.getElementById(id);}
function show(c){return c==='\n'?'\u21b5':c===' '?'\u2423':c==='\t'?'\u21e5':c;}
function spans(el,chars){var f=document.createDocumentFragment();
  for(var i=0;i<chars.length;i++){var s=document.createElement('span');
    s.textContent=chars[i]==='\n'?'\u21b5\n':chars[i];s.dataset.i=i;f.appendChild(s);}
  el.appendChild(f);return el.children;}
function shade(ss,color){for(var i=0;i<ss.length;i++)ss[i].style.backgroundColor=color(i);}
function rgba(rgb,a){return 'rgba('+rgb+','+Math.max(0,Math.min(1,a)).toFixed(3)+')';}
function hover(el,say){el.addEventListener('mouseover',function(e){
  var i=e.target.dataset?e.target.dataset.i:undefined;if(i!==undefined)say(+i);});}
var chars=Array.from(D.chars||'');
if(D.lm){
  var P=D.predictions,ps=spans($('pred-text'),chars);
  var mode=function(){return $('pred-mode').value;};
  var predColor=function(i){if(P.prob[i]===null)return 'transparent';
    return mode()==='bits'?rgba('214,39,40',D.bits[i]/8):rgba('214,39,40',1-P.prob[i]);};
  shade(ps,predColor);
  $('pred-mode').addEventListener('change',function(){shade(ps,predColor);});
  hover($('pred-text'),function(i){var t='\''+show(chars[i])+'\' at '+i+': ';
    if(P.prob[i]===null){
      $('pred-info').textContent=t+'the first character has no prediction';return;}
    t+='p = '+P.prob[i].toFixed(4)+' ('+D.bits[i].toFixed(2)+' bits). top 5 here: ';
    t+=P.top5[i].map(function(k){
      return (k[0]===chars[i]?'*':'')+'\''+show(k[0])+'\' '+k[1].toFixed(3);}).join('  ');
    $('pred-info').textContent=t;});
  var first0=P.prob.findIndex(function(p,i){return p!==null&&chars[i].trim();});
  if(first0>=0)ps[first0].dispatchEvent(new MouseEvent('mouseover',{bubbles:true}));
  var cache={};
  var series=function(s){if(!cache[s]){var b=atob(D.series[s].q),a=new Int8Array(b.length);
    for(var k=0;k<b.length;k++)a[k]=(b.charCodeAt(k)<<24)>>24;cache[s]=a;}return cache[s];};
  var act=function(s,u,t){var S=D.series[s];return series(s)[t*S.H+u]/127*S.scale[u];};
  var actColor=function(s,u){var m=Math.max(1,D.series[s].scale[u]);return function(t){
    var v=act(s,u,t)/m;return v>=0?rgba('214,39,40',v):rgba('31,119,180',-v);};};
  document.querySelectorAll('.best-text').forEach(function(el){
    var s=+el.dataset.series,u=+el.dataset.unit;shade(spans(el,chars),actColor(s,u));
    hover(el,function(t){$('unit-info').textContent=D.series[s].name+' #'+u+' at '+t+
      ' \''+show(chars[t])+'\': '+act(s,u,t).toFixed(3);});});
  var us=spans($('unit-text'),chars),cur={s:0,u:0};
  window.pickUnit=function(s,u){s=Math.max(0,Math.min(D.series.length-1,s|0));
    u=Math.max(0,Math.min(D.series[s].H-1,u|0));cur={s:s,u:u};
    $('unit-series').value=String(s);$('unit-index').value=String(u);
    $('unit-index').max=String(D.series[s].H-1);
    $('unit-label').textContent=D.series[s].name+' #'+u;shade(us,actColor(s,u));};
  hover($('unit-text'),function(t){$('unit-info').textContent=D.series[cur.s].name+' #'+cur.u+
    ' at '+t+' \''+show(chars[t])+'\': '+act(cur.s,cur.u,t).toFixed(3);});
  $('unit-series').addEventListener('change',function(){pickUnit(+this.value,+$('unit-index').value);});
  $('unit-index').addEventListener('change',function(){pickUnit(+$('unit-series').value,+this.value);});
  document.querySelectorAll('[data-pick]').forEach(function(b){b.addEventListener('click',function(){
    var p=b.dataset.pick.split(':');pickUnit(+p[0],+p[1]);$('unit-text').scrollIntoView();});});
  document.querySelectorAll('circle[data-pick-layer]').forEach(function(c){
    c.addEventListener('click',function(){var n=c.dataset.pickLayer+' h';
      var s=D.series.findIndex(function(x){return x.name===n;});
      if(s>=0){pickUnit(s,+c.dataset.unit);$('unit-text').scrollIntoView();}});});
  var first=(D.ranking.find(function(p){return p.units.length;})||{units:[]}).units;
  pickUnit(first.length?first[0].series:0,first.length?first[0].unit:0);
  if(D.ngram&&D.ngram.gain){var G=D.ngram.gain,gs=spans($('gain-text'),chars);
    shade(gs,function(i){var g=G[i];if(g===null)return 'transparent';
      return g>=0?rgba('44,160,44',g/4):rgba('214,39,40',-g/4);});
    hover($('gain-text'),function(i){if(G[i]===null)return;$('gain-info').textContent='\''+
      show(chars[i])+'\' at '+i+': model '+D.bits[i].toFixed(2)+' bits, '+D.ngram.order+
      '-gram '+(D.bits[i]+G[i]).toFixed(2)+' bits, gain '+(G[i]>=0?'+':'')+G[i].toFixed(2);});}
}
if(location.hash==='#selftest'){
  var r={sections:{},errors:[]};
  ['predictions','cells','gates','ngram','samples'].forEach(function(id){var s=$(id);
    r.sections[id]=s?{spans:s.querySelectorAll('.text span').length,
      circles:s.querySelectorAll('svg circle').length,rows:s.querySelectorAll('tr').length,
      samples:s.querySelectorAll('.sample').length,images:s.querySelectorAll('img').length,
      options:s.querySelectorAll('option').length,na:!!s.querySelector('.na')}:null;});
  if(D.lm){var colors=function(){return Array.prototype.map.call($('unit-text').children,
      function(x){return x.style.backgroundColor;}).join('|');};
    var before=colors(),from=[cur.s,cur.u],tries=0;
    while(colors()===before&&tries<20){tries++;var S=D.series[cur.s];
      var n=(cur.u+1)%S.H,s2=n===0?(cur.s+1)%D.series.length:cur.s;
      $('unit-series').value=String(s2);$('unit-index').value=String(n);
      $('unit-index').dispatchEvent(new Event('change'));}
    r.unit_from=from;r.unit_to=[cur.s,cur.u];r.tries=tries;r.reshaded=colors()!==before;
    var p=$('pred-text').children[Math.min(5,chars.length-1)];
    p.dispatchEvent(new MouseEvent('mouseover',{bubbles:true}));r.hover=$('pred-info').textContent;}
  r.errors=window.__errors.slice();var out=$('selftest');
  out.textContent=JSON.stringify(r);out.hidden=false;}
})();
"""
