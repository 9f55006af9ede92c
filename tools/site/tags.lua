-- Pandoc's MathML writer drops \tag{...}; keep equation numbers visible by writing them as text.
-- A tag on a row of an aligned block goes to a column of its own, so the numbers line up; a tag on
-- the whole block (after \end{aligned}) or on a one-line equation follows it after a gap.
local function numbered(tex, sep)
  return (tex:gsub('\\tag%*?%s*{([^}]*)}', sep))
end

function Math(el)
  if el.mathtype ~= 'DisplayMath' or not el.text:find('\\tag') then return nil end
  local t = el.text
  local last_end
  for pos in t:gmatch('()\\end{aligned}') do last_end = pos end
  if last_end then
    el.text = numbered(t:sub(1, last_end - 1), ' && \\text{(%1)}') .. numbered(t:sub(last_end), ' \\qquad \\text{(%1)}')
  else
    el.text = numbered(t, ' \\qquad \\text{(%1)}')
  end
  return el
end
